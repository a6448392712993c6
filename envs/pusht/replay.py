"""Push-T's simulator calls and success rules, and the replay of a record with gym-pusht alone.

This file imports gym-pusht, pymunk, shapely and numpy only (no project code), so it can be copied
out and run beside a records.jsonl. The env (env.py) resets and steps through the functions below,
so an episode and its replay make the same calls and end bit for bit in the same state.

The physics is gym-pusht's PushTEnv, unchanged: its pymunk space (no gravity, damping 0, so the
block stops when it is not pushed), its walls, its T block and its PD-controlled kinematic agent
(k_p 100, k_v 20), 10 physics steps of 0.01 s per `PushTEnv.step`. One control step here is one
`PushTEnv.step` (0.1 s), with the absolute target computed from our relative action:

    target = clip(agent position + ACTION_SCALE * clip(action, -1, 1), 0, BOARD)

so an action [2] in [-1, 1] is a displacement of the PD target from where the agent is now. Held,
it moves the agent steadily: 81 board px per second at full command (tests/test_pusht.py).

Units: board pixels (the board is BOARD = 512 px square, y pointing down in images), radians.
"""

from __future__ import annotations

import math
import os

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # gym-pusht imports pygame, which greets on import
from gym_pusht.envs.pusht import PushTEnv, pymunk_to_shapely

Sim = PushTEnv  # gym-pusht's env, under a name that does not clash with ours (env.py)

BOARD = 512.0
ACTION_SCALE = 20.0
"""Board px between the agent and its PD target per unit of action."""
STATE_SIZE = 10
"""agent x, y, agent vx, vy, block centre-of-gravity x, y, block angle, block vx, vy, angular velocity."""
POSITION_TOLERANCE = 20.0
"""push: L2 over (agent x, y, block x, y) to the goal's below this (DINO-WM / stable-worldmodel)."""
ANGLE_TOLERANCE = math.pi / 9
"""push: block angle within this of the goal's."""
COVERAGE_TO_SUCCEED = 0.95
"""T: the block covers more than this fraction of the target outline (gym-pusht's success)."""


def make_sim() -> PushTEnv:
    """gym-pusht's env, state observations only (it never renders here)."""
    return PushTEnv(obs_type="state", render_mode="rgb_array")


def set_state(sim: PushTEnv, state) -> None:
    """Sets the full state [10] on a fresh pymunk space (gym-pusht's `_setup`: walls, agent, T),
    so a state set here steps identically wherever it came from (no contact cached from before).

    pymunk keeps a body's centre of gravity (CoG) position, and reading or writing `position`
    goes through the body origin (origin = CoG - R(angle) @ cog), which does not round-trip bit
    for bit. So the state holds the CoG position, written with the body's cog set to zero for a
    moment (position = CoG exactly), then the cog restored and the transform rebuilt by setting
    the angle again: the same transform pymunk's own step computes from (CoG, angle)."""
    state = np.asarray(state, np.float64)
    if state.shape != (STATE_SIZE,) or not np.all(np.isfinite(state)):
        raise ValueError(f"a pusht state is {STATE_SIZE} finite numbers, got {state!r}")
    sim._setup()  # gym-pusht's reset builds its space this way; its own state setter also steps once
    sim.agent.position = (state[0], state[1])  # a circle centred on its origin: no CoG offset
    sim.agent.velocity = (state[2], state[3])
    block, cog = sim.block, sim.block.center_of_gravity
    block.center_of_gravity = (0.0, 0.0)
    block.angle = state[6]
    block.position = (state[4], state[5])
    block.center_of_gravity = cog
    block.angle = state[6]
    block.velocity = (state[7], state[8])
    block.angular_velocity = state[9]


def get_state(sim: PushTEnv) -> np.ndarray:
    """float64 [10], the state set_state takes (read back through the same zero-cog moment)."""
    block, cog, angle = sim.block, sim.block.center_of_gravity, sim.block.angle
    block.center_of_gravity = (0.0, 0.0)
    block.angle = angle  # transform from (CoG, angle) with a zero offset: position reads the CoG
    centre = block.position
    block.center_of_gravity = cog
    block.angle = angle
    return np.array([*sim.agent.position, *sim.agent.velocity, *centre, angle, *block.velocity,
                     block.angular_velocity], np.float64)


def pose(sim: PushTEnv) -> np.ndarray:
    """float64 [5]: agent x, y, block origin x, y, block angle: gym-pusht's state observation
    (unwrapped angle), the numbers the success rules compare."""
    return np.array([*sim.agent.position, *sim.block.position, sim.block.angle], np.float64)


def control_step(sim: PushTEnv, action) -> dict:
    """One control step (0.1 s): gym-pusht's step toward the target of the relative action [2]
    (module docstring); returns gym-pusht's info (with "coverage" of its fixed target)."""
    action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
    target = np.clip(np.asarray(sim.agent.position, np.float64) + ACTION_SCALE * action, 0.0, BOARD)
    return sim.step(target)[4]


def wrap(angle: float) -> float:
    """An angle difference mapped to [-pi, pi]."""
    return float(math.atan2(math.sin(angle), math.cos(angle)))


def t_polygon(p: np.ndarray):
    """The T at pose p [5] (agent x, y, block origin x, y, angle) as a shapely polygon, as gym-pusht builds it."""
    return pymunk_to_shapely(PushTEnv.get_goal_pose_body(np.array([p[2], p[3], p[4]])), T_SHAPES)


def coverage(now: np.ndarray, goal: np.ndarray) -> float:
    """Fraction of the T at goal pose [5] covered by the T at pose now [5] (gym-pusht's measure)."""
    target = t_polygon(goal)
    return float(t_polygon(now).intersection(target).area / target.area)


def outcome(goal_kind: str, now: np.ndarray, goal: np.ndarray, scale: float = 1.0) -> dict:
    """{"success", "distance" (the number the rule thresholds), named errors} of pose now [5]
    against the goal [5].
    push: L2 over (agent x, y, block x, y) < 20 px and |block angle error| < pi/9.
    T: the block covers > 95% of the goal's T (the agent's place does not count).
    scale: every tolerance times this (push's 20 px and pi/9, T's uncovered 5%); 1 = the rule."""
    position = float(np.linalg.norm(now[:4] - goal[:4]))
    angle = abs(wrap(now[4] - goal[4]))
    block = float(np.linalg.norm(now[2:4] - goal[2:4]))
    if goal_kind == "T":
        covered = coverage(now, goal)
        return {"success": covered > 1.0 - scale * (1.0 - COVERAGE_TO_SUCCEED), "distance": 1.0 - covered,
                "position_error": position,
                "angle_error": angle, "block_error": block}
    if goal_kind != "push":
        raise ValueError(f"unknown pusht goal kind {goal_kind!r}; choose push or T")
    return {"success": position < scale * POSITION_TOLERANCE and angle < scale * ANGLE_TOLERANCE, "distance": position,
            "angle_error": angle, "block_error": block}


def replay(record: dict) -> dict:
    """Re-simulates a record: {"final_state" [10], "success" (at the end of the budget),
    "success_any" (after any control step), "distance"}."""
    sim = make_sim()
    options, kind = record["options"], record["goal_kind"]
    goal = np.asarray(options["goal"], np.float64)
    set_state(sim, options["start_state"])
    reached = False
    for action in record["actions"]:
        control_step(sim, action)
        reached = reached or outcome(kind, pose(sim), goal)["success"]
    end = outcome(kind, pose(sim), goal)
    return {"final_state": get_state(sim).tolist(), "success": bool(end["success"]), "success_any": bool(reached),
            "distance": end["distance"]}


def _t_shapes():
    """The T's two polygons as gym-pusht builds them (a throwaway space), for coverage."""
    import pymunk

    return PushTEnv.add_tee(pymunk.Space(), (0, 0), 0)[1]


T_SHAPES = _t_shapes()
