"""Rendering and collection throughput, and bytes per stored frame.

    python benchmarks/collection_speed.py [--sizes 64 128] [--episodes 20] [--shadows]

Prints one JSON line per measurement. Run it on an otherwise idle machine: rendering is CPU-bound
(software EGL) and anything else running halves the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

import envs
from agent.collect import DataConfig, collect
from world_model.dataset import Dataset


def render_fps(size: int, shadows: bool, steps: int = 300) -> float:
    """env.step (5 control steps + one rendered frame) per second in one process."""
    env = envs.make("reacher", image_size=size, action_repeat=5, shadows=shadows)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 2))
    env.step(actions[0])
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def collection(size: int, shadows: bool, workers: int, episodes: int, steps: int) -> dict:
    out = Path(tempfile.mkdtemp()) / "data"
    env = {"name": "reacher", "image_size": size, "action_repeat": 5, "shadows": shadows}
    data = DataConfig(episodes=episodes, steps=steps, episodes_per_shard=max(1, episodes // (4 * workers)),
                      workers=workers, out=str(out))
    start = time.perf_counter()
    collect(env, data, progress=False)
    elapsed = time.perf_counter() - start
    ds = Dataset(out)
    frames = int(ds.episode_lengths.sum())
    total_bytes = sum(p.stat().st_size for p in out.rglob("*.npy"))
    shutil.rmtree(out.parent)
    return {"frames": frames, "seconds": round(elapsed, 2), "frames_per_s": round(frames / elapsed, 1),
            "bytes_per_frame": round(total_bytes / frames, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--shadows", action="store_true", help="render dm_control's shadows and floor reflection")
    args = parser.parse_args()
    machine = {"cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(), "shadows": args.shadows}
    for size in args.sizes:
        print(json.dumps({"bench": "render", "image_size": size, "env_steps_per_s": round(render_fps(size, args.shadows), 1), **machine}))
        for workers in (1, 2):
            result = collection(size, args.shadows, workers, args.episodes, args.steps)
            print(json.dumps({"bench": "collect", "image_size": size, "workers": workers, **result, **machine}))


if __name__ == "__main__":
    main()
