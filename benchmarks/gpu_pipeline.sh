#!/usr/bin/env bash
# The whole `python -m agent.run env=reacher` pipeline on the GPU machine (device tool): collect
# with many rendering workers (EGL on the GPU), train, fit the critic, evaluate with batched CEM on
# CUDA. Needs .whl (../shared/tools/device-wheels.sh) and .gl (EGL loaders, see the device README)
# carried. Extra arguments go to agent.run. Videos are off: imageio-ffmpeg is not on that machine.
set -o pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD MUJOCO_GL=egl PYTHONUNBUFFERED=1
probe='import mujoco; r = mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 64, 64); print("EGL renders")'
python3 -c "$probe" || { export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json; python3 -c "$probe" || exit 1; }
echo "cores: $(nproc)"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m agent.run env=reacher data.workers=14 eval.videos=0 cache_root=/tmp/cache \
  hydra.run.dir="$OUT/run" "$@" 2>&1 | tr '\r' '\n' | grep -v -E '[0-9]+%\|' | tee "$OUT/log.txt"
