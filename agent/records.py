"""Per-episode records, and their replay in plain dm_control (no code from this project).

A record holds everything needed to re-simulate an episode: the env, the dm_control physics state
at the start (`physics.get_state()`), the target position, the goal, and every action as applied to
dm_control, one per control step. `replay` is written against dm_control's public API only.
"""

from __future__ import annotations

import numpy as np

from agent.protocols import EpisodeSpec

# Mirrors envs.goals.JOINT_TOLERANCE; kept literal here so replay depends on dm_control alone.
JOINT_TOLERANCE = 0.05
TASKS = {"reacher": "easy", "reacher-hard": "hard"}


def make_record(spec: EpisodeSpec, env, decision_actions: np.ndarray, repeat: int, plan_ms: np.ndarray,
                policy: str, wall_s: float) -> dict:
    """The record of an episode that has just ended in `env`."""
    outcome = env.evaluate()
    distance = outcome["max_joint_error"] if spec.goal_kind == "state" else outcome["fingertip_distance"]
    return {
        "env": spec.env,
        "policy": policy,
        "seed": spec.seed,
        "goal_kind": spec.goal_kind,
        "physics_state_start": list(spec.physics_state_start),
        "target_pos": list(spec.target_pos),
        "goal_qpos": None if spec.goal_qpos is None else list(spec.goal_qpos),
        "budget": spec.budget,
        # every action as applied to dm_control, one per control step (the action repeat unrolled)
        "actions": np.repeat(decision_actions.astype(np.float64), repeat, axis=0).tolist(),
        "final_qpos": env.qpos.tolist(),
        "success": bool(outcome["success"]),
        "final_distance": float(distance),
        "plan_ms": [float(x) for x in plan_ms],
        "wall_s": float(wall_s),
    }


def replay(record: dict) -> dict:
    """Re-simulates a record with dm_control alone; returns {final_qpos, success, final_distance}."""
    from dm_control import suite

    env = suite.load("reacher", TASKS[record["env"]], task_kwargs={"random": 0})
    env.reset()  # sets the task's target size
    physics = env.physics
    with physics.reset_context():
        physics.set_state(np.asarray(record["physics_state_start"]))
        physics.named.model.geom_pos["target", "x"] = record["target_pos"][0]
        physics.named.model.geom_pos["target", "y"] = record["target_pos"][1]
    for action in record["actions"]:
        env.step(np.asarray(action))
    qpos = physics.data.qpos.copy()
    if record["goal_kind"] == "state":
        error = np.angle(np.exp(1j * (qpos - np.asarray(record["goal_qpos"]))))  # wrapped to (-pi, pi]
        distance = float(np.abs(error).max())
        success = distance <= JOINT_TOLERANCE
    else:
        distance = float(np.linalg.norm(physics.finger_to_target()))
        success = distance <= physics.named.model.geom_size[["target", "finger"], 0].sum()
    return {"final_qpos": qpos.tolist(), "success": bool(success), "final_distance": distance}
