"""Replays a two-rooms (or four-rooms) evaluation record with MuJoCo alone: no code from this project.

A record (agent/episode_record.py) names its env ("env") and holds the episode's reset options
("start_state" [4]: qpos x, y and qvel x, y; "goal_pos" [2]) and every action as applied to the
simulator, one [2] per control step (the action repeat already unrolled). This file imports mujoco
and numpy only and loads the env's model from the XML beside it named after the env (two-rooms:
two_rooms.xml, four-rooms: four_rooms.xml), so the two can be copied out and run beside a
records.jsonl. Every layout of the family shares the state, the step and the success rule below.

The env (env.py) resets and steps through the functions below, so an env episode and its replay
run the same calls on the same model, and end bit for bit in the same state.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

STATE_SIZE = 4  # qpos x, y and qvel x, y


def model_path(env: str) -> Path:
    """The model file of the layout registered as `env`: "four-rooms" -> four_rooms.xml beside this file."""
    path = Path(__file__).with_name(env.replace("-", "_") + ".xml")
    if not path.is_file():
        raise ValueError(f"no model for env {env!r}: {path} does not exist")
    return path


def load_model(env: str) -> mujoco.MjModel:
    """The model of the layout registered as `env` ("two-rooms", "four-rooms"), compiled from its XML."""
    return mujoco.MjModel.from_xml_path(str(model_path(env)))


def success_distance(model: mujoco.MjModel) -> float:
    """Metres: the agent has reached the goal when its centre is closer than this."""
    return float(model.numeric("success_distance").data[0])


def set_state(model: mujoco.MjModel, data: mujoco.MjData, state) -> None:
    """Sets sim state [4] (qpos x, y, qvel x, y). MjData is reset first (solver warm start, time,
    controls), so a state set here steps identically wherever it came from."""
    state = np.asarray(state, np.float64)
    if state.shape != (STATE_SIZE,) or not np.all(np.isfinite(state)):
        raise ValueError(f"a two-rooms sim state is {STATE_SIZE} finite numbers (x, y, vx, vy), got {state!r}")
    mujoco.mj_resetData(model, data)
    data.qpos[:] = state[:2]
    data.qvel[:] = state[2:]
    mujoco.mj_forward(model, data)


def control_step(model: mujoco.MjModel, data: mujoco.MjData, action) -> None:
    """One control step (0.02 s): the motor commands [2], clipped to [-1, 1], for one mj_step."""
    data.ctrl[:] = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
    mujoco.mj_step(model, data)


def get_state(data: mujoco.MjData) -> np.ndarray:
    """float64 [4]: qpos x, y, qvel x, y."""
    return np.concatenate([data.qpos, data.qvel])


def goal_distance(data: mujoco.MjData, goal_pos) -> float:
    """Metres from the agent's centre to the goal position [2]."""
    return float(np.linalg.norm(data.qpos - np.asarray(goal_pos, np.float64)))


def replay(record: dict) -> dict:
    """Re-simulates a record: {"final_state": [4] (qpos, qvel), "success": bool (at the end),
    "success_any": bool (after any control step), "distance": metres}."""
    model = load_model(record["env"])
    data = mujoco.MjData(model)
    options = record["options"]
    set_state(model, data, options["start_state"])
    threshold, reached = success_distance(model), False
    for action in record["actions"]:
        control_step(model, data, action)
        reached = reached or goal_distance(data, options["goal_pos"]) < threshold
    distance = goal_distance(data, options["goal_pos"])
    return {"final_state": get_state(data).tolist(), "success": distance < threshold, "success_any": reached,
            "distance": distance}
