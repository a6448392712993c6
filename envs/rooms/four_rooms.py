"""Four rooms: the two-rooms point mass in a 2 x 2 grid of rooms joined in a ring by four doors.

A layout of the two-rooms family: the same agent, dynamics, camera, success rule, behaviour policy
and replay (env.py, replay.py); only the model (four_rooms.xml), the split axes and the budget of
the "rooms" goal kind differ. Start and goal in diagonally opposite rooms share no wall, so every
path between them passes two doors; the straight line between them crosses a wall (for all but
6 in 20,000 pairs, on a 45-degree line through two doors).
"""

from __future__ import annotations

from typing import ClassVar

from envs.base import GoalKind
from envs.rooms.env import TwoRoomsEnv


class FourRoomsEnv(TwoRoomsEnv):
    """A point mass in four rooms in a ring, with pixels, proprioception and a goal image.

    Geometry (four_rooms.xml, metres): free floor x, y in [-0.5, 0.5]; 0.04 thick walls along
    x = 0 and y = 0 split it into four 0.48 m square rooms (x < 0 or > 0) x (y < 0 or > 0); each of
    the four wall segments between neighbouring rooms has one 0.2 m door near the outer wall,
    centred 0.35 m from the centre (x = 0, y = +-0.35 and y = 0, x = +-0.35), so that a push
    straight at a diagonal goal slides along the walls into the centre's dead end rather than
    through the doors (four_rooms.xml). Agent, dynamics, observation and action are two-rooms'.

    Success (both goal kinds): the agent's centre within 0.07 m of the goal at the end of the
    budget. As in two-rooms a goal behind a wall cannot be reached through it: centres on either
    side of any wall are at least 0.12 m apart (wall 0.04 + twice the radius 0.04), and the cross
    at the centre keeps centres in diagonal rooms at least 0.17 m apart.

    Budget of "rooms": 280 control steps. Starts and goals uniform in diagonally opposite rooms
    (0.05 m clearance) have a shortest path through two doors (a visibility graph on the corners of
    the walls grown by the agent radius, in the space of agent centres) of median 0.93 m (10th
    percentile 0.78 m, 90th 1.07 m, max 1.27 m, over 2,000 pairs); at 0.5 m/s that is 93 control
    steps (0.02 s); three times that, rounded to a multiple of 5, is 280 (two-rooms: 215, the
    same way; tests/test_four_rooms.py recomputes both).

    `reset` options and everything else: as TwoRoomsEnv.
    """

    name = "four-rooms"
    split_axes = (0, 1)
    goal_kinds: ClassVar[dict[str, GoalKind]] = {
        "rooms": GoalKind(
            budget=280,
            success="agent centre within 0.07 m of the goal position at the end",
            doc="start at rest and goal uniform in diagonally opposite rooms: the path passes two doors",
        ),
        "near": TwoRoomsEnv.goal_kinds["near"],  # the same protocol and budget as two-rooms
    }


__all__ = ["FourRoomsEnv"]
