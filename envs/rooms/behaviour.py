"""The behaviour policy that records the offline two-rooms video: a random walk that bounces.

As in PLDM's two-rooms data: the agent keeps a heading, which every env step turns by a von Mises
draw (concentration `kappa`: persistent, smoothly curving paths rather than jitter), and pushes
along it with a speed drawn per segment of a few env steps. When the agent is near a wall and its
heading points into it, the heading is reflected off that wall, so the agent bounces around a room
and, now and then, through the door, instead of pressing into a wall for the rest of the episode.
Episodes start anywhere in the free space of either room (the env's random reset).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class BehaviourConfig:
    """Settings of the random walk (one per field)."""

    kappa: float = 8.0
    """Concentration of the von Mises heading change drawn every env step: 0 gives a fresh uniform
    heading each step, larger values straighter paths (8: about 0.36 rad std per step)."""
    speed: list[float] = field(default_factory=lambda: [0.7, 1.0])
    """[low, high]: the action magnitude (1 = full motor command along the heading, 0.5 m/s) is
    drawn uniformly from this range for each segment. Faster walks reach the door more often:
    29% of 100-step episodes cross it at [0.7, 1.0], 21% at [0.3, 1.0] (1000 episodes each)."""
    segment_steps: list[int] = field(default_factory=lambda: [5, 20])
    """[low, high]: a speed is kept for a number of env steps drawn uniformly from this range."""
    wall_margin: float = 0.01
    """Metres between the agent's surface and a wall below which a heading into that wall is
    reflected. Small, so the agent reaches walls and slides along them (the contact is
    frictionless) towards the door: 29% of 100-step episodes cross the door at 0.01, 21% at 0.03."""


class RandomWalk:
    """The bouncing random walk of the module docstring; one instance per episode."""

    def __init__(self, cfg: BehaviourConfig, rng: np.random.Generator, obstacles: np.ndarray):
        """obstacles [K, 4]: walls as boxes (centre x, y, half-width, half-height) grown by the
        agent radius, so the agent touches a wall when its centre touches the grown box."""
        if cfg.kappa < 0:
            raise ValueError(f"behaviour.kappa must be >= 0, got {cfg.kappa}")
        if len(cfg.speed) != 2 or not 0 <= cfg.speed[0] <= cfg.speed[1] <= 1:
            raise ValueError(f"behaviour.speed must be [low, high] with 0 <= low <= high <= 1, got {cfg.speed}")
        if len(cfg.segment_steps) != 2 or not 1 <= cfg.segment_steps[0] <= cfg.segment_steps[1]:
            raise ValueError(
                f"behaviour.segment_steps must be [low, high] with 1 <= low <= high, got {cfg.segment_steps}"
            )
        if cfg.wall_margin < 0:
            raise ValueError(f"behaviour.wall_margin must be >= 0, got {cfg.wall_margin}")
        self.cfg = cfg
        self.rng = rng
        self.centres = np.asarray(obstacles, np.float64)[:, :2]
        self.halves = np.asarray(obstacles, np.float64)[:, 2:]
        self.heading: float | None = None
        self.speed = 0.0
        self.steps_left = 0

    def _bounce(self, pos: np.ndarray, heading: float) -> float:
        """The heading reflected off every wall within wall_margin that it points into."""
        direction = np.array([np.cos(heading), np.sin(heading)])
        for centre, half in zip(self.centres, self.halves):
            away = pos - np.clip(pos, centre - half, centre + half)  # from the box's nearest point
            gap = float(np.linalg.norm(away))
            if gap >= self.cfg.wall_margin or np.all(away != 0):
                # Beyond a box's corner (a door post): no bounce, the agent slides round it, as
                # the frictionless contact lets it; bouncing there would turn it back from the door.
                continue
            if gap > 0:
                normal = away / gap
            else:  # pressed slightly into the grown box: out through the nearest face
                depth = half - np.abs(pos - centre)
                axis = int(np.argmin(depth))
                normal = np.zeros(2)
                normal[axis] = 1.0 if pos[axis] >= centre[axis] else -1.0
            into = float(direction @ normal)
            if into < 0:
                direction = direction - 2 * into * normal
        return float(np.arctan2(direction[1], direction[0]))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """obs with proprio [4] (x, y, vx, vy) -> action float32 [2] in [-1, 1]."""
        if self.heading is None:
            self.heading = float(self.rng.uniform(-np.pi, np.pi))
        else:
            self.heading += float(self.rng.vonmises(0.0, self.cfg.kappa))
        if self.steps_left <= 0:
            low, high = self.cfg.segment_steps
            self.steps_left = int(self.rng.integers(low, high + 1))
            self.speed = float(self.rng.uniform(*self.cfg.speed))
        self.steps_left -= 1
        self.heading = self._bounce(np.asarray(obs["proprio"][:2], np.float64), self.heading)
        action = self.speed * np.array([np.cos(self.heading), np.sin(self.heading)])
        return np.clip(action, -1.0, 1.0).astype(np.float32)
