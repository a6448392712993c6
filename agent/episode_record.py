"""Per-episode records, and the check that each replays to its reported outcome.

A record holds everything needed to re-simulate an episode: the env, the episode's reset options
(start state and goal, in the env family's own terms), and every action as applied to the
simulator, one per control step (`action_repeat` of them per decision; `plan_ms` > 0 marks the
decisions the planner planned at). `envs.replay(record)` re-simulates it with the family's
simulator alone (envs/<family>/replay.py imports no project code).
"""

from __future__ import annotations

import numpy as np

import envs
from envs import EpisodeSpec


def make_record(spec: EpisodeSpec, env, decision_actions: np.ndarray, plan_ms: np.ndarray, policy: str,
                wall_s: float) -> dict:
    """The record of an episode that has just ended in `env`; decision_actions [decisions, A]."""
    outcome = env.evaluate()
    distances = {k: float(v) for k, v in outcome.items()
                 if k not in ("success", "distance") and isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)}
    return {
        "env": spec.env,
        "policy": policy,
        "seed": spec.seed,
        "goal_kind": spec.goal_kind,
        "options": spec.options,
        "budget": spec.budget,
        # what the planner saw before the start (a start taken mid-motion), so the world model's
        # predictions along the episode can be recomputed from the record (agent/imagined.py)
        "previous_state": spec.previous_state,
        "previous_action": spec.previous_action,
        "action_repeat": env.action_repeat,
        # every action as applied to the simulator, one per control step (the action repeat unrolled)
        "actions": np.repeat(decision_actions.astype(np.float64), env.action_repeat, axis=0).tolist(),
        "final_state": env.get_sim_state().tolist(),
        "success": bool(outcome["success"]),  # at the end of the budget (our rule)
        "success_any": bool(env.reached()),  # after any control step within it (the anchors' rule)
        "final_distance": float(outcome["distance"]),
        "distances": distances,
        "plan_ms": [float(x) for x in plan_ms],
        "wall_s": float(wall_s),
    }


def replay_matches(record: dict) -> bool:
    """True when the simulator alone, given the record's start and actions, ends in the recorded
    state bit for bit and with the recorded success by both rules (at the end, at any step)."""
    again = envs.replay(record)
    return (again["final_state"] == record["final_state"] and again["success"] == record["success"]
            and again["success_any"] == record["success_any"])
