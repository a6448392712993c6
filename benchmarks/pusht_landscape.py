"""How the goal energy of a Push-T world model grows as the agent, the block or its angle moves.

    python benchmarks/pusht_landscape.py --checkpoint RUN/latest [--goals 20]

For random goal poses, frames are drawn (envs/pusht/draw.py, at the model's image size) with the
agent moved, the block moved (along a random direction) or the block turned, by each offset, and
the energy (mean squared latent difference, the planner's L2) to the unmoved frame is averaged
over the goals. Success needs agent and block within about 14 px each and the angle within 20
degrees, so the energy should grow clearly from 5 to 20 px and 5 to 20 degrees. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

import world_model
from envs.pusht.draw import draw

OFFSETS = (5, 10, 20, 40, 80)  # board px for the moves, degrees for the turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--goals", type=int, default=20)
    args = parser.parse_args()
    model = world_model.load(args.checkpoint).eval()
    size = model.cfg.image_size
    rng = np.random.default_rng(0)
    energies = {"agent_px": [], "block_px": [], "angle_deg": []}
    with torch.no_grad():
        for _ in range(args.goals):
            goal = np.array([*rng.uniform(80, 430, 2), *rng.uniform(150, 360, 2), rng.uniform(-3, 3)])
            d = rng.normal(size=2)
            d /= np.linalg.norm(d)
            moves = {"agent_px": [*d, 0, 0, 0], "block_px": [0, 0, *d, 0], "angle_deg": [0, 0, 0, 0, math.radians(1)]}
            frames = [draw(goal, size)] + [draw(goal + o * np.array(unit), size) for unit in moves.values() for o in OFFSETS]
            z = model.encode(torch.as_tensor(np.stack(frames))[None])[0]  # [1 + 3 * len(OFFSETS), D]
            e = (z[1:] - z[0]).square().mean(-1).reshape(len(moves), len(OFFSETS))
            for name, row in zip(moves, e):
                energies[name].append(row.numpy())
    print(json.dumps({"checkpoint": args.checkpoint, "offsets": list(OFFSETS), "goals": args.goals,
                      **{k: [round(float(x), 4) for x in np.mean(v, 0)] for k, v in energies.items()}}))


if __name__ == "__main__":
    main()
