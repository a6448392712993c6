"""Planning latency of one CEM decision with a trained world model, for 1 and for 50 episodes at once.

    python benchmarks/plan_latency.py CHECKPOINT [--samples 50 --iterations 4 --elites 8 --horizon 5]
        [--device cpu] [--compile]

Search settings default to planners.cem.CEM's (configs/planner/cem.yaml); `--samples 150 --iterations 6
--elites 15` is the default before 2026-12-05.

Times `CEM.plan` with the rollout the planning policy uses (`WorldModel.rollout_candidates`: the
candidates of an episode share its history) and the goal energy; random latents stand in for
encoded frames (the cost of a plan does not depend on their values). --compile times the same with
the predictor's candidate rollout under `torch.compile` (inductor; CPU kernels too), after the
compilation, which is reported apart. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import time

import torch

import world_model
from agent.costs import aim, build_cost
from planners.cem import CEM


def timed_ms(call, device: torch.device) -> float:
    """Milliseconds of call() (on CUDA: until its kernels have finished)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start)


@torch.no_grad()  # not torch.set_grad_enabled(False): called as a function (the smoke test), it left gradients off
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    defaults = {k: p.default for k, p in inspect.signature(CEM).parameters.items()}
    parser.add_argument("--samples", type=int, default=defaults["samples"])
    parser.add_argument("--iterations", type=int, default=defaults["iterations"])
    parser.add_argument("--elites", type=int, default=defaults["elites"])
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile the predictor's candidate rollout")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    wm = world_model.load(args.checkpoint).to(device).eval()
    d, a = wm.cfg.latent_dim, wm.cfg.action_dim
    if args.compile:
        # dynamic=False: a planner calls with one shape per batch size, so each gets its own kernels
        wm.predictor.rollout_candidates = torch.compile(wm.predictor.rollout_candidates, dynamic=False)
    for batch in (1, 50):
        z_hist = torch.randn(batch, 2, d, device=device)
        cost = build_cost({"goal": 1.0, "action_magnitude": 0.0, "action_smoothness": 0.0},
                          {"metric": "l2", "last_weight": 1.0, "step_weight": 0.1, "scales": (1,)})
        cost_fn = aim(cost, torch.randn(batch, d, device=device))  # [B, D] goal bound
        cem = CEM(args.horizon, args.samples, args.iterations, args.elites)

        def rollout_fn(actions, z_hist=z_hist):
            """actions [B, N, H, A] -> z [B, N, H, D]"""
            return wm.rollout_candidates(z_hist, actions)

        init = torch.zeros(batch, args.horizon, a, device=device)
        low, high = torch.full((a,), -1.0, device=device), torch.full((a,), 1.0, device=device)
        def decide(cem=cem, rollout_fn=rollout_fn, cost_fn=cost_fn, init=init, low=low, high=high):
            cem.plan(rollout_fn, cost_fn, init, low, high)

        first_ms = timed_ms(decide, device)  # warms up; under --compile, compiles
        times = sorted(timed_ms(decide, device) for _ in range(args.repeats))
        print(json.dumps({"episodes": batch, "device": str(device), "compile": args.compile,
                          "first_call_ms": round(first_ms, 1), "threads": torch.get_num_threads(),
                          "cpus": os.cpu_count(), "samples": args.samples, "iterations": args.iterations, "elites": args.elites,
                          "horizon": args.horizon, "ms_per_decision_median": round(times[len(times) // 2], 1),
                          "ms_per_episode_decision": round(times[len(times) // 2] / batch, 1)}))


if __name__ == "__main__":
    main()
