"""What the Push-T behaviour video holds, and how much the `push` goals ask of the block.

    python benchmarks/pusht_data.py DATASET_FOLDER [--episodes 200 --seed 0]

From the dataset's proprio (agent x, y, block origin x, y, block angle per frame):
    moving_frames        fraction of env steps in which the block moves (> 1 board px or > 0.02 rad)
    episodes_moving      fraction of episodes in which the block moves at all
    block_net_px         median / 90th percentile of each episode's net block displacement (px)
    block_xy_percentiles 1st, 50th and 99th percentiles of block x and y (board px of 512)
    angle_coverage       fraction of 36 ten-degree bins of the block angle that hold >= 0.5% of frames
    contact_frames       fraction of frames with the agent's centre within 25 px of the T's outline
From `--episodes` push goals of evaluation seed `--seed` (the env's own sampler): the fraction
whose block moves between start and goal by more than the success tolerance (20 px or pi/9),
i.e. the episodes that cannot be solved by moving the agent alone.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

import envs
from agent.protocols import make_episodes
from world_model.dataset import Dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from shapely.geometry import Point

    from envs.pusht.replay import t_polygon

    data = Dataset(args.dataset)
    moving, net, per_episode, poses = [], [], [], []
    for index in range(data.num_episodes):
        p = np.asarray(data.episode(index).proprio, np.float64)  # [T, 5]
        step = (np.linalg.norm(np.diff(p[:, 2:4], axis=0), axis=1) > 1.0) | (np.abs(np.diff(p[:, 4])) > 0.02)
        moving.append(step)
        per_episode.append(step.any())
        net.append(float(np.linalg.norm(p[-1, 2:4] - p[0, 2:4])))
        poses.append(p)
    poses = np.concatenate(poses)
    angle_bins = np.histogram(np.mod(poses[:, 4], 2 * math.pi), 36, (0, 2 * math.pi))[0] / len(poses)
    sample = poses[:: max(1, len(poses) // 5000)]
    contact = np.mean([t_polygon(p).distance(Point(*p[:2])) < 25.0 for p in sample])
    env = envs.make("pusht")
    specs = make_episodes(env, "push", args.episodes, args.seed)
    block_moves = []
    for spec in specs:
        env.reset(seed=spec.seed, options=spec.options)
        now, goal = env.sim.block, np.asarray(spec.options["goal"])
        shift = math.hypot(now.position[0] - goal[2], now.position[1] - goal[3])
        turn = abs(math.atan2(math.sin(now.angle - goal[4]), math.cos(now.angle - goal[4])))
        block_moves.append(shift > 20.0 or turn > math.pi / 9)
    print(json.dumps({
        "dataset": args.dataset,
        "episodes": len(per_episode),
        "frames": len(poses),
        "moving_frames": round(float(np.concatenate(moving).mean()), 3),
        "episodes_moving": round(float(np.mean(per_episode)), 3),
        "block_net_px": [round(float(np.median(net)), 1), round(float(np.percentile(net, 90)), 1)],
        "block_xy_percentiles": {axis: [round(float(v), 1) for v in np.percentile(poses[:, i], [1, 50, 99])]
                                 for axis, i in (("x", 2), ("y", 3))},
        "angle_coverage": round(float(np.mean(angle_bins >= 0.005)), 3),
        "contact_frames": round(float(contact), 3),
        "push_goals": {"seed": args.seed, "episodes": args.episodes,
                       "block_moves_beyond_tolerance": round(float(np.mean(block_moves)), 3)},
    }))


if __name__ == "__main__":
    main()
