"""How often the behaviour video of a rooms layout (two-rooms, four-rooms) passes through doors.

    python benchmarks/two_rooms_data.py DATASET_FOLDER

The layout is the dataset's env (its manifest). At each frame the agent is "in" a room when it is
fully inside it: |x| (and |y| in four-rooms) beyond the wall plus the agent's radius, 0.06 m,
on the room's side of every inner wall; frames in a doorway belong to no room. An episode passes a
door each time the room it is in changes. PLDM falls from 97.8% to 34.4% success when no training
trajectory crosses, so these are the numbers to watch:

    crossing_episodes         at least one door passed (two-rooms: fully in both rooms at some frames)
    two_door_episodes         at least two doors passed (the same door twice counts)
    two_distinct_doors        two different doors passed
    reaching_the_opposite_room   in the room opposite the first one (every sign flipped: the other
                              room in two-rooms, the diagonal one in four-rooms) at some frame
    ending_in_another_room    the first and the last frame fully in rooms, different ones

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
from itertools import pairwise

import numpy as np

import envs
from world_model.dataset import Dataset

CLEAR = 0.06  # m: half an inner wall (0.02) + the agent's radius (0.04), in both layouts


def rooms_visited(positions: np.ndarray, split_axes: tuple[int, ...]) -> list[tuple[int, ...] | None]:
    """positions [T, 2] (m) -> per frame the room the agent is fully in (a sign per split axis), or None."""
    coords = positions[:, list(split_axes)]
    inside = np.all(np.abs(coords) > CLEAR, axis=1)
    return [tuple(int(s) for s in np.sign(c)) if ok else None for c, ok in zip(coords, inside)]


def door_passes(rooms: list[tuple[int, ...] | None]) -> list[frozenset]:
    """The doors passed, in order, each as the pair of rooms it joins."""
    seen = [r for r in rooms if r is not None]
    return [frozenset((a, b)) for a, b in pairwise(seen) if a != b]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    args = p.parse_args()
    ds = Dataset(args.dataset)
    name = ds.manifest["env"]["name"]
    split_axes = envs.REGISTRY[name][0].split_axes
    counts = dict.fromkeys(["crossing_episodes", "two_door_episodes", "two_distinct_doors",
                            "reaching_the_opposite_room", "ending_in_another_room"], 0)
    frames = 0
    for e in range(ds.num_episodes):
        rooms = rooms_visited(np.asarray(ds.episode(e).states[:, :2]), split_axes)  # the agent's x, y [T+1, 2]
        doors = door_passes(rooms)
        seen = [r for r in rooms if r is not None]
        counts["crossing_episodes"] += len(doors) >= 1
        counts["two_door_episodes"] += len(doors) >= 2
        counts["two_distinct_doors"] += len(set(doors)) >= 2
        counts["reaching_the_opposite_room"] += bool(seen) and tuple(-s for s in seen[0]) in seen
        counts["ending_in_another_room"] += rooms[0] is not None and rooms[-1] is not None and rooms[0] != rooms[-1]
        frames += len(rooms)
    print(json.dumps({"env": name, "episodes": ds.num_episodes, "frames": frames,
                      **{k: round(v / ds.num_episodes, 3) for k, v in counts.items()}}))


if __name__ == "__main__":
    main()
