#!/usr/bin/env bash
# Two-rooms on the GPU machine (device tool): collect and train once, then evaluate planner settings
# on the TUNING evaluation seed (eval.seed=1; reported figures use eval.seed=0 on the CPU), and time
# one CEM decision at stable-worldmodel's setting (300 samples x 30 iterations x horizon 5).
# Only the trained model and the default critic come back (under $OUT/model). Needs .whl (../shared/tools/device-wheels.sh) and .gl (EGL loaders) carried. Extra arguments go to
# every agent.run call.
set -o pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD MUJOCO_GL=egl PYTHONUNBUFFERED=1
probe='import mujoco; r = mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 64, 64); print("EGL renders")'
python3 -c "$probe" || { export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json; python3 -c "$probe" || exit 1; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
clean() { tr '\r' '\n' | grep -v -E '[0-9]+%\|'; }
T0=$(date +%s)
python3 -m agent.run env=two-rooms stage=train data.workers=14 cache_root=/tmp/cache hydra.run.dir=/tmp/ev/train "$@" 2>&1 | clean | tail -15
echo "train done t=$(( $(date +%s) - T0 ))s"
CK=$(ls -d /tmp/cache/models/two-rooms-*/latest | head -1)
ev() { name=$1; shift; python3 -m agent.run env=two-rooms stage=eval checkpoint=$CK cache_root=/tmp/cache eval.seed=1 \
  eval.videos=0 eval.verify_replay=false hydra.run.dir=/tmp/ev/$name "$@" 2>&1 | clean | grep -E "^(rooms|near) |critic:|Error|error" | sed "s/^/$name: /"; }
mkdir -p $OUT/model && cp $CK/model.safetensors $CK/checkpoint.json $OUT/model/
# Planner and critic settings on rooms (tuning seed 1); each critic config trains its own critic.
C50="critic.cap=50 critic.steps=10000"
ev base eval.baselines=[random,zero] "$@"
cp /tmp/cache/critics/two-rooms-*/critic.* $OUT/model/  # the default critic (the only one so far)
ev minh5 eval.goal_kinds=[rooms] eval.baselines=[] configurator.rooms.critic_reduce=min "$@" &
ev minh10 eval.goal_kinds=[rooms] eval.baselines=[] configurator.rooms.critic_reduce=min configurator.rooms.horizon=10 "$@" &
ev c50h5 eval.goal_kinds=[rooms] eval.baselines=[] $C50 "$@" &
ev c50minh10 eval.goal_kinds=[rooms] eval.baselines=[] $C50 configurator.rooms.critic_reduce=min configurator.rooms.horizon=10 "$@" &
ev c50wide eval.goal_kinds=[rooms] eval.baselines=[] $C50 critic.dim=64 critic.hidden=512 configurator.rooms.critic_reduce=min configurator.rooms.horizon=10 "$@" &
ev c50big eval.goal_kinds=[rooms] eval.baselines=[] $C50 configurator.rooms.step_weight=0.0 configurator.rooms.horizon=10 configurator.rooms.samples=300 configurator.rooms.iterations=10 configurator.rooms.elites=30 "$@" &
wait
echo "evals done t=$(( $(date +%s) - T0 ))s"
echo "all done t=$(( $(date +%s) - T0 ))s"
