"""Replays a reacher evaluation record in plain dm_control: no code from this project.

A record (agent/episode_record.py) holds the episode's reset options (dm_control's physics state at the
start, the target position, the goal) and every action as applied to dm_control, one per control
step. This file imports dm_control and numpy only, so it can be copied out and run beside a
records.jsonl to check a reported outcome.
"""

from __future__ import annotations

import numpy as np

# The state-goal tolerance of envs/reacher/goals.py, literal here so replay depends on dm_control alone.
JOINT_TOLERANCE = 0.05
TASKS = {"reacher": "easy", "reacher-hard": "hard"}


def replay(record: dict) -> dict:
    """Re-simulates a record; returns {final_state [6] (qpos, qvel, target x, y), success (at the
    end), success_any (after any control step), distance}."""
    from dm_control import suite

    options = record["options"]
    env = suite.load("reacher", TASKS[record["env"]], task_kwargs={"random": 0})
    env.reset()  # sets the task's target size
    physics = env.physics
    with physics.reset_context():
        physics.set_state(np.asarray(options["physics_state"]))
        physics.named.model.geom_pos["target", "x"] = options["target_pos"][0]
        physics.named.model.geom_pos["target", "y"] = options["target_pos"][1]
    reached = False
    for action in record["actions"]:
        env.step(np.asarray(action))
        reached = reached or _judge(record["goal_kind"], physics, options)[0]
    success, distance = _judge(record["goal_kind"], physics, options)
    final_state = np.concatenate([physics.get_state(), physics.named.model.geom_pos["target", :2]])
    return {"final_state": final_state.tolist(), "success": bool(success), "success_any": bool(reached),
            "distance": distance}


def _judge(goal_kind: str, physics, options: dict) -> tuple[bool, float]:
    """(success, the distance the rule thresholds) of the physics' current state."""
    if goal_kind == "state":
        error = np.angle(np.exp(1j * (physics.data.qpos - np.asarray(options["goal_qpos"]))))  # wrapped to (-pi, pi]
        distance = float(np.abs(error).max())
        return distance <= JOINT_TOLERANCE, distance
    distance = float(np.linalg.norm(physics.finger_to_target()))
    return distance <= physics.named.model.geom_size[["target", "finger"], 0].sum(), distance
