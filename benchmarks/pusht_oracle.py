"""What limits Push-T `push`: the planner and horizon, the goal energy, or the world model?

    python benchmarks/pusht_oracle.py --checkpoint RUN/latest --cost state|energy|agent
        [--readout READOUT_FOLDER --episodes 40 --seed 1 --samples 100 --iterations 5 --workers 2 --metric l2 --scales 1
         --only 3,7 --out episodes.jsonl]

The agent's CEM loop (horizon, step weights and bounds as configs/configurator/pusht.yaml sets
them for `push`), but every candidate is played out in the true simulator
(gym-pusht's physics from the episode's current state) instead of the world model, so the model's
prediction error is taken out. The candidates are then scored by either
  state   the success rule's own numbers: L2 over (agent x, y, block x, y) / 20 px
          + |angle error| / (pi / 9), per decision ahead
  energy  the world model's goal energy on the frames the simulator gives (each candidate's frames
          drawn and encoded; the energy the planner minimises on predicted latents, with --metric
          and --scales as the configurator's metric and energy_scales)
  agent   the agent's own cost for `push` on those encoded frames: every term the configurator
          weighs (goal energy, the probe readout with its group weights, ...), built by
          agent/evaluate.py plan_parts as the evaluator builds it; --readout names the fitted readout
          (cache_root/readouts/<key>) of the checkpoint
with the step weights of the configurator (earlier decisions `step_weight`, the last 1). If the
state oracle fails, search or horizon limit; if the energy oracle fails where the state oracle
succeeds, the energy does; if both succeed, the world model's prediction is what the agent lacks.
Episodes are evaluation episodes (agent/protocols.py) of `--seed`, each played to the goal kind's
budget; success is judged at the end and at any control step, as the evaluator does.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

import world_model
from agent.configurator import Configurator, TaskSettings
from agent.costs import GoalEnergy, over_steps
from agent.eval_summary import wilson_interval
from agent.evaluate import plan_grid, plan_parts
from agent.protocols import make_episodes
from agent.readout import load_readout
from envs.pusht.draw import draw
from envs.pusht.env import PushTEnv
from envs.pusht.replay import ANGLE_TOLERANCE, POSITION_TOLERANCE, control_step, make_sim, pose, set_state
from planners.cem import CEM
from world_model.encoder import GRID

CONFIGURATOR = Path(__file__).resolve().parents[1] / "configs" / "configurator" / "pusht.yaml"


def push_settings() -> TaskSettings:
    """The configurator's settings for `push` (horizon, step and last weights), as the agent plans with them."""
    return TaskSettings(**OmegaConf.to_container(OmegaConf.load(CONFIGURATOR))["push"])


def state_cost(poses: torch.Tensor, goal: np.ndarray) -> torch.Tensor:
    """poses [N, H, 5] (agent x, y, block x, y, angle) -> [N, H]: the success rule's distances in
    units of their tolerances."""
    g = torch.as_tensor(goal, dtype=poses.dtype)
    position = (poses[..., :4] - g[:4]).norm(dim=-1) / POSITION_TOLERANCE
    turn = torch.remainder(poses[..., 4] - g[4] + math.pi, 2 * math.pi) - math.pi
    return position + turn.abs() / ANGLE_TOLERANCE


def simulate(sim, start: np.ndarray, repeat: int, actions: torch.Tensor) -> torch.Tensor:
    """actions [1, N, H, 2] -> poses [1, N, H, 5]: each candidate played from state `start` [10] in
    the true simulator, `repeat` control steps per action."""
    out = np.zeros((*actions.shape[1:3], 5))
    for n, seq in enumerate(actions[0].double().numpy()):
        set_state(sim, start)
        for h, a in enumerate(seq):
            for _ in range(repeat):
                control_step(sim, a)
            out[n, h] = pose(sim)
    return torch.from_numpy(out)[None]


def play(job: dict) -> dict:
    """One episode under the oracle planner -> its outcome."""
    torch.set_num_threads(1)
    spec, args = job["spec"], job["args"]
    model = world_model.load(args["checkpoint"]).eval() if args["cost"] != "state" else None
    env = PushTEnv(image_size=model.cfg.image_size if model else 64)
    env.reset(seed=spec.seed, options=spec.options)
    goal = np.asarray(spec.options["goal"], np.float64)
    sim, repeat = make_sim(), env.action_repeat
    task = push_settings()
    planner = CEM(horizon=task.horizon, samples=args["samples"], iterations=args["iterations"],
                  elites=max(2, args["samples"] // 10), seed=job["index"])
    scales = tuple(int(x) for x in args["scales"].split(","))
    energy = GoalEnergy(metric=args["metric"], last_weight=task.last_weight, step_weight=task.step_weight, scales=scales,
                        grid=(GRID, model.cfg.token_dim) if model and scales != (1,) else None)
    if args["cost"] == "agent":  # the evaluator's cost, every term the configurator weighs for `push`
        setup = Configurator.of_run(OmegaConf.load(CONFIGURATOR), env).setup("push")
        readout = load_readout(Path(args["readout"])) if args["readout"] else None
        energy = plan_parts(setup, plan_grid(model), {"readout": readout})[1]
    z_goal = model.encode(env.render_pose(goal)[None, None])[0] if model else None  # [1, D]
    low, high = torch.full((2,), -1.0), torch.full((2,), 1.0)
    plan = torch.zeros(1, task.horizon, 2)

    def cost(poses: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """poses [1, N, H, 5] -> [1, N]"""
        if model is None:
            return over_steps(state_cost(poses[0], goal), task.last_weight, task.step_weight)[None].float()
        frames = np.stack([[draw(p, model.cfg.image_size) for p in seq] for seq in poses[0].numpy()])  # [N, H, h, w, 3]
        return energy(model.encode(torch.from_numpy(frames))[None], actions, z_goal)  # z [1, N, H, D]

    with torch.no_grad():
        for _ in range(spec.budget // repeat):
            rollout = partial(simulate, sim, env.get_sim_state(), repeat)
            result = planner.plan(rollout, cost, plan, low, high)
            env.step(result.actions[0, 0].numpy())
            plan = torch.cat([result.actions[:, 1:], result.actions[:, -1:]], dim=1)  # shifted warm start
        info = env.evaluate()
    return {"success": bool(info["success"]), "success_any": env.reached(), "distance": float(info["distance"]),
            "angle_error": float(info["angle_error"]), "block_error": float(info["block_error"])}


def rounded(interval: tuple[float, float]) -> list[float]:
    return [round(x, 3) for x in interval]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="the world model (its encoder scores --cost energy)")
    parser.add_argument("--cost", choices=("state", "energy", "agent"), required=True)
    parser.add_argument("--readout", help="the checkpoint's fitted probe readout folder, read by --cost agent")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1, help="evaluation seed of the episodes")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", help="comma-separated episode indices to play (e.g. the failures of an earlier run)")
    parser.add_argument("--metric", choices=("l2", "l1"), default="l2", help="the goal energy's (agent/costs.py GoalEnergy)")
    parser.add_argument("--scales", default="1", help="energy over these token poolings, e.g. 1,2 (agent/costs.py GoalEnergy)")
    parser.add_argument("--out", help="also write one JSON line per episode (its outcome and final errors) here")
    args = parser.parse_args()
    if args.cost == "agent" and not args.readout:
        parser.error("--cost agent scores with the configurator's readout term: pass --readout "
                     "cache_root/readouts/<env>-<key>, the readout agent.run fitted for this checkpoint")
    began = time.perf_counter()
    specs = make_episodes(PushTEnv(), "push", args.episodes, args.seed)
    chosen = [int(i) for i in args.only.split(",")] if args.only else range(len(specs))
    jobs = [{"spec": specs[i], "index": i, "args": vars(args)} for i in chosen]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(play, jobs))
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps({"episode": job["index"], **r}) + "\n" for job, r in zip(jobs, results))
    n = len(results)
    end, anytime = sum(r["success"] for r in results), sum(r["success_any"] for r in results)
    print(json.dumps({
        "cost": args.cost, "metric": args.metric, "scales": args.scales, "episodes": n, "seed": args.seed, "samples": args.samples, "iterations": args.iterations,
        "success_end": end / n, "wilson_end": rounded(wilson_interval(end, n)), "success_any": anytime / n,
        "wilson_any": rounded(wilson_interval(anytime, n)),
        "median_block_px": float(np.median([r["block_error"] for r in results])),
        "median_angle_deg": float(np.degrees(np.median([r["angle_error"] for r in results]))),
        "minutes": round((time.perf_counter() - began) / 60, 1),
    }))


if __name__ == "__main__":
    main()
