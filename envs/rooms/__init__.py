"""Two rooms: a point mass in a square arena split by walls with doors, with image goals; the env,
its behaviour policy, its models (two_rooms.xml, four_rooms.xml: one per layout) and its
standalone replay."""

from envs.rooms.env import TwoRoomsEnv
from envs.rooms.four_rooms import FourRoomsEnv
from envs.rooms.replay import replay

ENVS = {
    "two-rooms": (TwoRoomsEnv, {}),
    "four-rooms": (FourRoomsEnv, {}),
}

__all__ = ["ENVS", "FourRoomsEnv", "TwoRoomsEnv", "replay"]
