#!/usr/bin/env bash
# One GPU call: trains world-model variants in parallel (the CPU default's steps and batch, so the
# results transfer to the CPU pipeline) and packs each run's checkpoint and metrics into $OUT.
# Planning is then evaluated on the CPU with `python -m agent.run stage=eval checkpoint=...`, since
# the GPU machine has no EGL to render with.
#
# Prepare on the CPU machine, from the repo root (both folders are git-ignored):
#   bash ../shared/tools/device-wheels.sh .whl 3.12
#   mkdir -p gpu && (cd cache/datasets && for d in reacher-*; do tar czf ../../gpu/$d.tgz $d; done)
# The variants below are the second sweep of docs/NOTEBOOK.md, written with the loss defaults
# of that day spelled out (covariance 0.04 and inverse dynamics 0.5 unless a line says otherwise).
# then run `TRAIN_LIMIT=285 bash benchmarks/gpu_sweep.sh` there, carrying .whl and gpu.
set -u
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD MUJOCO_GL=disable OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
mkdir -p cache/datasets runs evals
for f in gpu/reacher-*.tgz; do tar xzf $f -C cache/datasets; done
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
M="world_model.stem_channels=16 world_model.encoder_width=64 world_model.predictor_width=128 world_model.predictor_depth=2"
train() { name=$1; shift; timeout ${TRAIN_LIMIT:-400} python3 -m agent.run env=reacher stage=train device=cuda out=runs/$name hydra.run.dir=runs/$name/hydra $M "$@" > runs/$name.log 2>&1; echo "$name train rc=$? t=$(( $(date +%s) - T0 ))s"; }
train C1m3 world_model=tokens steps=2000 loss.covariance_weight=1.0 loss.motion_floor=0.3 loss.inverse_dynamics_weight=0.5 &
train C2 world_model=tokens steps=2000 loss.covariance_weight=2.0 loss.inverse_dynamics_weight=0.5 &
train C1i2 world_model=tokens steps=2000 loss.covariance_weight=1.0 loss.inverse_dynamics_weight=2.0 &
train C1t8 world_model=tokens steps=2000 loss.covariance_weight=1.0 world_model.token_dim=8 loss.inverse_dynamics_weight=0.5 &
train C1s96 world_model=tokens env.image_size=96 steps=2000 loss.covariance_weight=1.0 loss.inverse_dynamics_weight=0.5 &
train C1long world_model=tokens steps=4000 loss.covariance_weight=1.0 loss.inverse_dynamics_weight=0.5 &
train C1pool world_model=pooled steps=2000 loss.covariance_weight=1.0 loss.inverse_dynamics_weight=0.5 &
train C1pred world_model=tokens steps=2000 loss.covariance_weight=1.0 world_model.predictor_width=256 world_model.predictor_depth=3 loss.inverse_dynamics_weight=0.5 &
wait
echo "training done t=$(( $(date +%s) - T0 ))s"
for n in C1m3 C2 C1i2 C1t8 C1s96 C1long C1pool C1pred; do
  tar czf $OUT/$n.tgz runs/$n/latest/model.safetensors runs/$n/latest/checkpoint.json runs/$n/metrics.jsonl runs/$n.log evals/$n.log evals/$n/summary.json evals/$n/records.jsonl 2>/dev/null
done
for n in C1m3 C2 C1i2 C1t8 C1s96 C1long C1pool C1pred; do echo "== $n"; grep -h "held loss" runs/$n.log | tr '\r' '\n' | grep "step " | tail -2; grep -A12 "^protocol" evals/$n.log 2>/dev/null; done
echo "total t=$(( $(date +%s) - T0 ))s"
