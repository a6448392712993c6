"""Planning latency of one CEM decision with a trained world model, for 1 and for 50 episodes at once.

    python benchmarks/plan_latency.py CHECKPOINT [--samples 150 --iterations 6 --horizon 5] [--device cpu]

Times `CEM.plan` with the world model's rollout and the goal energy (random latents stand in for
encoded frames: the cost of a plan does not depend on their values). Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

import world_model
from agent.costs import aim, build_cost
from planners.cem import CEM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--samples", type=int, default=150)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    wm = world_model.load(args.checkpoint).to(device)
    d, a = wm.cfg.latent_dim, wm.cfg.action_dim
    for batch in (1, 50):
        z_hist = torch.randn(batch, 2, d, device=device)
        cost = build_cost({"goal": 1.0, "action_magnitude": 0.0, "action_smoothness": 0.0},
                          {"metric": "l2", "last_weight": 1.0, "step_weight": 0.1, "scales": (1,)})
        cost_fn = aim(cost, torch.randn(batch, d, device=device))  # [B, D] goal bound
        cem = CEM(args.horizon, args.samples, args.iterations, max(1, args.samples // 10))

        def rollout_fn(actions, b=batch, z_hist=z_hist):
            n, h = actions.shape[1], actions.shape[2]
            hist = z_hist[:, None].expand(-1, n, -1, -1).reshape(b * n, 2, d)  # [B*N, 2, D]
            return wm.rollout(hist, actions.reshape(b * n, h, a)).reshape(b, n, h, d)

        init = torch.zeros(batch, args.horizon, a, device=device)
        low, high = torch.full((a,), -1.0, device=device), torch.full((a,), 1.0, device=device)
        times = []
        for _ in range(args.repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            cem.plan(rollout_fn, cost_fn, init, low, high)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(1000 * (time.perf_counter() - start))
        times = sorted(times[1:])  # the first call warms up
        print(json.dumps({"episodes": batch, "device": str(device), "threads": torch.get_num_threads(),
                          "cpus": os.cpu_count(), "samples": args.samples, "iterations": args.iterations,
                          "horizon": args.horizon, "ms_per_decision_median": round(times[len(times) // 2], 1),
                          "ms_per_episode_decision": round(times[len(times) // 2] / batch, 1)}))


if __name__ == "__main__":
    main()
