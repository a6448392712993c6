"""Time of one world-model rollout as the planner calls it: 7,500 candidate sequences (150 samples x
50 episodes) x 5 steps from a 2-frame history, on the CPU.

    PYTHONPATH=. python benchmarks/rollout_speed.py CHECKPOINT [--candidates 7500 --horizon 5 --repeats 3]

Random latents and actions stand in for real ones (the cost does not depend on their values).
Prints one JSON line: mean milliseconds per rollout after one warm-up call.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

import world_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--candidates", type=int, default=7500)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    wm = world_model.load(args.checkpoint).eval()
    z = torch.randn(args.candidates, wm.cfg.history, wm.cfg.latent_dim)  # [N, K, D]
    actions = torch.rand(args.candidates, args.horizon, wm.cfg.action_dim) * 2 - 1  # [N, H, A]
    wm.rollout(z, actions)  # warm-up: allocator and thread pool
    start = time.perf_counter()
    for _ in range(args.repeats):
        wm.rollout(z, actions)
    ms = (time.perf_counter() - start) / args.repeats * 1000
    print(json.dumps({"latent_dim": wm.cfg.latent_dim, "candidates": args.candidates, "horizon": args.horizon,
                      "ms_per_rollout": round(ms, 1), "threads": torch.get_num_threads(), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
