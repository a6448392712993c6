"""dm_control's two-link reacher with image goals: the env, its goals, behaviour policy and replay."""

from envs.reacher.env import ReacherEnv
from envs.reacher.replay import replay

ENVS = {
    "reacher": (ReacherEnv, {"task": "easy"}),
    "reacher-hard": (ReacherEnv, {"task": "hard"}),
}

__all__ = ["ENVS", "ReacherEnv", "replay"]
