"""Push-T: a disc agent pushes a T-shaped block to a goal pose (gym-pusht's pymunk physics, drawn
from above with OpenCV); the env, its scripted pusher, its drawing and its standalone replay."""

from envs.pusht.env import PushTEnv
from envs.pusht.replay import replay

ENVS = {"pusht": (PushTEnv, {})}

__all__ = ["ENVS", "PushTEnv", "replay"]
