"""Two rooms: a point mass in a square arena split by a wall with one door, with image goals; the
env, its behaviour policy, its model (two_rooms.xml) and its standalone replay."""

from envs.two_rooms.env import TwoRoomsEnv
from envs.two_rooms.replay import replay

ENVS = {
    "two-rooms": (TwoRoomsEnv, {}),
}

__all__ = ["ENVS", "TwoRoomsEnv", "replay"]
