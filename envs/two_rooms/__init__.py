"""Two rooms: a point mass in a square arena split by walls with doors, with image goals; the env,
its behaviour policy, its models (two_rooms.xml, four_rooms.xml: one per layout) and its
standalone replay."""

from envs.two_rooms.env import TwoRoomsEnv
from envs.two_rooms.four_rooms import FourRoomsEnv
from envs.two_rooms.replay import replay

ENVS = {
    "two-rooms": (TwoRoomsEnv, {}),
    "four-rooms": (FourRoomsEnv, {}),
}

__all__ = ["ENVS", "FourRoomsEnv", "TwoRoomsEnv", "replay"]
