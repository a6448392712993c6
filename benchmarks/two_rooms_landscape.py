"""Where flat planning fails on two-rooms: steepest descent on the goal energy and on the critic.

    python benchmarks/two_rooms_landscape.py CHECKPOINT [--critic CRITIC_FOLDER] [--grid 24] [--goals 20]

On a grid of agent positions over the free floor, each position's frame is encoded; for goals in
one room and every start cell of the other room, steepest descent over the 8-neighbour grid on
(a) the token L2 energy to the goal and (b) the critic's distance to the goal either ends within
one cell of the goal (success) or stops in a local minimum. Prints the success fraction and
where the minima lie (at the wall, in the start room, elsewhere) as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import envs
import world_model
from agent.critic import load_critic
from world_model.train import encode_frames


def descend(cost: np.ndarray, free: np.ndarray, start: tuple[int, int]) -> tuple[int, int]:
    """cost [G, G] over free cells; follows the lowest 8-neighbour until none is lower."""
    g = cost.shape[0]
    i, j = start
    for _ in range(4 * g * g):
        best = (cost[i, j], i, j)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                ii, jj = i + di, j + dj
                if 0 <= ii < g and 0 <= jj < g and free[ii, jj] and cost[ii, jj] < best[0]:
                    best = (cost[ii, jj], ii, jj)
        if (best[1], best[2]) == (i, j):
            break
        i, j = best[1], best[2]
    return i, j


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--critic", default=None)
    p.add_argument("--grid", type=int, default=24)
    p.add_argument("--goals", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--same-room", action="store_true", help="goals in the start room (a control: no wall between)")
    args = p.parse_args()
    start_time = time.perf_counter()
    wm = world_model.load(args.checkpoint).eval()
    env = envs.make("two-rooms", image_size=wm.cfg.image_size)
    env.reset(seed=0)
    g = args.grid
    coords = np.linspace(-0.46, 0.46, g)
    cells = [(i, j) for i in range(g) for j in range(g)]
    pos = np.array([[coords[i], coords[j]] for i, j in cells])  # [G*G, 2]: x = coords[i], y = coords[j]
    free = np.array([env.is_free(q, margin=0.04) for q in pos]).reshape(g, g)
    frames = np.stack([env.render_position(q) for q in pos])  # [G*G, H, W, 3]
    z = encode_frames(wm.encode, frames, torch.device("cpu"))  # [G*G, D]
    critic = load_critic(args.critic) if args.critic else None
    emb = critic.embed(z).detach() if critic is not None else None  # [G*G, dim]
    rng = np.random.default_rng(args.seed)
    left = [c for c in range(g * g) if free.flat[c] and pos[c, 0] < -0.1]
    right = [c for c in range(g * g) if free.flat[c] and pos[c, 0] > 0.1]
    results = {"energy": [], "critic": []}
    minima = {"energy": {"wall": 0, "start room": 0, "elsewhere": 0}, "critic": {"wall": 0, "start room": 0, "elsewhere": 0}}
    targets = left if args.same_room else right
    for goal in rng.choice(targets, size=min(args.goals, len(targets)), replace=False):
        costs = {"energy": (z - z[goal]).square().mean(-1).numpy().reshape(g, g)}
        if emb is not None:
            costs["critic"] = (emb - emb[goal]).norm(dim=-1).numpy().reshape(g, g)
        gi, gj = cells[goal]
        for name, cost in costs.items():
            for s in left:
                ei, ej = descend(cost, free, cells[s])
                ok = max(abs(ei - gi), abs(ej - gj)) <= 1
                results[name].append(ok)
                if not ok:
                    x = coords[ei]
                    where = "wall" if abs(x) < 0.15 else ("start room" if x < 0 else "elsewhere")
                    minima[name][where] += 1
    machine = {"cpus": os.cpu_count(), "machine": platform.processor() or platform.machine()}
    for name, oks in results.items():
        if oks:
            print(json.dumps({"cost": name, "goals_in": "start room" if args.same_room else "other room", "grid": g, "goals": args.goals, "starts_per_goal": len(left),
                              "descent_success": round(float(np.mean(oks)), 3), "failures_end": minima[name],
                              "seconds": round(time.perf_counter() - start_time, 1), **machine}))
    env.close()


if __name__ == "__main__":
    main()
