"""Where the CPU time of one planning decision goes: encoder, predictor rollout, cost, and the
planner's own sampling and bookkeeping, for B episodes planned together.

    PYTHONPATH=. python benchmarks/plan_profile.py CHECKPOINT [--episodes 50] [--planner cem] [--ops]

Random frames and latents stand in for observations (the cost of a decision does not depend on
their values). The cost is protocol (a)'s: goal energy with step weights, no critic. Prints one
JSON line (median of --repeats decisions after one warm-up). --ops profiles --repeats more decisions
under torch.profiler and adds the 15 operators with the most self CPU time per decision to the JSON
line ("ops": self seconds, share of all operators' self CPU time, calls) and as a table after it
(benchmarks/profile_ops.py says what self CPU time counts); the profiler's overhead makes those
decisions slower than the timed ones.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from profile_ops import ops_table, top_ops  # benchmarks/profile_ops.py, beside this script

import world_model
from agent.configurator import PlanSetup, build_planner
from agent.costs import aim, build_cost
from world_model.encoder import GRID


class Timer:
    """Wraps a function and adds up its wall time."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args):
        start = time.perf_counter()
        out = self.fn(*args)
        self.seconds += time.perf_counter() - start
        return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--planner", default="cem", help="configs/planner/<name>.yaml")
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ops", action="store_true", help="also profile --repeats decisions: torch.profiler's top 15 ops")
    args = parser.parse_args(argv)
    wm = world_model.load(args.checkpoint).eval()
    d, a, b = wm.cfg.latent_dim, wm.cfg.action_dim, args.episodes
    grid = (GRID, wm.cfg.token_dim) if wm.cfg.representation == "tokens" else None
    cfg = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "configs" / "planner" / f"{args.planner}.yaml"))
    setup = PlanSetup(budget=50, decisions=10, horizon=args.horizon, planner_overrides={}, replan_every=1,
                      shrink_horizon=True, cost_weights={}, goal_energy={})
    planner = build_planner(cfg, setup)
    cost = build_cost({"goal": 1.0, "action_magnitude": 0.0, "action_smoothness": 0.0},
                      {"metric": "l2", "last_weight": 1.0, "step_weight": 0.5, "scales": (1,)}, grid)
    frames = torch.randint(0, 256, (b, 1, wm.cfg.image_size, wm.cfg.image_size, 3), dtype=torch.uint8)
    low, high = torch.full((a,), -1.0), torch.full((a,), 1.0)

    def decision(parts: dict) -> None:
        with torch.no_grad():
            start = time.perf_counter()
            z_now = wm.encode(frames)[:, 0]  # [B, D]
            parts["encode"] += time.perf_counter() - start
            z_hist = torch.stack([z_now, z_now], dim=1)  # [B, 2, D]

            def rollout(actions):  # [B, N, H, A] -> [B, N, H, D], as agent/policies.py plans
                return wm.rollout_candidates(z_hist, actions, past_actions=torch.zeros(b, 1, a))

            rollout_fn, cost_fn = Timer(rollout), Timer(aim(cost, z_now.flip(0)))  # goal [B, D]: another episode's frame
            start = time.perf_counter()
            planner.plan(rollout_fn, cost_fn, torch.zeros(b, args.horizon, a), low, high)
            total = time.perf_counter() - start
            parts["rollout"] += rollout_fn.seconds
            parts["cost"] += cost_fn.seconds
            parts["planner_own"] += total - rollout_fn.seconds - cost_fn.seconds

    runs = []
    for i in range(args.repeats + 1):
        parts = dict.fromkeys(("encode", "rollout", "cost", "planner_own"), 0.0)
        decision(parts)
        if i:
            runs.append(parts)
    runs.sort(key=lambda p: sum(p.values()))
    median = runs[len(runs) // 2]
    record = {"episodes": b, "planner": args.planner, "latent_dim": d, "threads": torch.get_num_threads(),
              "cpus": os.cpu_count(), "ms": {k: round(1000 * v, 1) for k, v in median.items()},
              "ms_total": round(1000 * sum(median.values()), 1)}
    if args.ops:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(args.repeats):
                decision(dict.fromkeys(("encode", "rollout", "cost", "planner_own"), 0.0))
        ops, total = top_ops(prof, 15, per=args.repeats)
        record.update(ops_decisions=args.repeats, ops_self_s=total, ops=ops)
    print(json.dumps(record))
    if args.ops:
        print(f"\ntop 15 operators by self CPU time, over {args.repeats} profiled decisions "
              "(share: of all operators' self CPU time)")
        print(ops_table(ops, total, unit="decision"))
    return record


if __name__ == "__main__":
    main()
