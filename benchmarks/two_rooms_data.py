"""How often the two-rooms behaviour video passes through the door.

    python benchmarks/two_rooms_data.py DATASET_FOLDER

An episode "crosses" when its agent is fully in both rooms at some frames (|x| beyond the wall
plus the agent's radius, 0.06 m, on both sides). PLDM falls from 97.8% to 34.4% success when no
training trajectory crosses, so this is the number to watch. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from world_model.dataset import Dataset

CLEAR = 0.06  # m: half the wall (0.02) + the agent's radius (0.04)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    args = p.parse_args()
    ds = Dataset(args.dataset)
    crosses, ends_other, frames = 0, 0, 0
    for e in range(ds.num_episodes):
        x = np.asarray(ds.episode(e).states[:, 0])  # the agent's x over the episode [T+1]
        crosses += bool(x.min() < -CLEAR and x.max() > CLEAR)
        ends_other += bool(np.sign(x[0]) != np.sign(x[-1]) and abs(x[-1]) > CLEAR and abs(x[0]) > CLEAR)
        frames += len(x)
    print(json.dumps({"episodes": ds.num_episodes, "frames": frames, "crossing_episodes": round(crosses / ds.num_episodes, 3),
                      "ending_in_the_other_room": round(ends_other / ds.num_episodes, 3)}))


if __name__ == "__main__":
    main()
