"""The behaviour policy that records the offline Push-T video: a scripted pusher with noise.

Random actions barely touch the block (the agent is a 30 px disc on a 512 px board), so the video
would teach the model nothing about contact. The pusher repeats segments of two kinds:

- push (probability `push_fraction`): pick a contact point on the T's outline (an edge drawn by
  its length, a point uniform along it) and a push direction into the block along that edge's
  inward normal, turned by a von Mises draw; walk round the block (on a circle about its centre,
  so it does not knock it on the way) to a point just outside the contact, then push along the
  direction for a few decisions. Near the board's edge the contact is chosen among a few draws
  so that the push moves the block back toward the middle.
- wander: a random heading and speed for a few decisions (free motion, and contacts no pusher
  would choose).

Every action gets Gaussian noise. One decision is one env step (`action_repeat` control steps);
the policy reads proprio [5] (agent x, y, block origin x, y, block angle) alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.pusht.draw import AGENT_RADIUS
from envs.pusht.replay import ACTION_SCALE, BOARD

# The outline of the T in its own frame (board px): the bar is y in [0, 30], the stem y in [30, 120].
OUTLINE = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)], np.float64)
COG = np.array([0.0, 45.0])  # the block's centre of gravity in its own frame (gym-pusht's add_tee)
CLEAR_RADIUS = 110.0  # board px from the CoG: circling at this distance clears every point of the T (75) and the agent (15)
# Board px the agent moves per decision per unit of action, about: 81 px/s held for 0.5 s (5 control
# steps of 0.1 s), less the speed-up.
STRIDE = 2.0 * ACTION_SCALE


@dataclass
class BehaviourConfig:
    """Settings of the scripted pusher (one per field; docs/DATA.md measures what they give)."""

    push_fraction: float = 0.8
    """Probability that a segment is a push (else a wander)."""
    push_decisions: list[int] = field(default_factory=lambda: [2, 6])
    """[low, high]: decisions a push lasts once the agent is at the contact."""
    wander_decisions: list[int] = field(default_factory=lambda: [1, 4])
    """[low, high]: decisions a wander lasts."""
    speed: list[float] = field(default_factory=lambda: [0.4, 1.0])
    """[low, high]: action magnitude of a push or a wander, drawn per segment (1 = 81 px/s held)."""
    kappa: float = 6.0
    """Concentration of the von Mises turn of a push direction away from the edge's normal
    (6: about 0.45 rad standard deviation); pushes off the normal rotate the block."""
    noise: float = 0.1
    """Standard deviation of the Gaussian noise added to every action component."""
    approach_decisions: int = 12
    """A push whose contact is not reached in this many decisions is dropped."""
    edge_margin: float = 110.0
    """Board px: with the block's centre closer than this to an edge, the contact is the one of
    4 draws whose push points most toward the middle."""


def _edges() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The outline's edges: starts [8, 2], unit directions [8, 2], lengths [8]."""
    starts = OUTLINE
    ends = np.roll(OUTLINE, -1, axis=0)
    lengths = np.linalg.norm(ends - starts, axis=1)
    return starts, (ends - starts) / lengths[:, None], lengths


EDGE_STARTS, EDGE_DIRECTIONS, EDGE_LENGTHS = _edges()
# Counter-clockwise in a y-down image is clockwise in these coordinates: the outward normal of an
# edge along (dx, dy) is (dy, -dx) for the vertex order above (checked in tests).
EDGE_NORMALS = np.stack([EDGE_DIRECTIONS[:, 1], -EDGE_DIRECTIONS[:, 0]], axis=1)


def rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return v @ np.array([[c, s], [-s, c]])  # row vectors: v @ R^T


class ScriptedPusher:
    """The pusher of the module docstring; one instance per episode."""

    def __init__(self, cfg: BehaviourConfig, rng: np.random.Generator):
        for name in ("push_decisions", "wander_decisions"):
            low_high = getattr(cfg, name)
            if len(low_high) != 2 or not 1 <= low_high[0] <= low_high[1]:
                raise ValueError(f"behaviour.{name} must be [low, high] with 1 <= low <= high, got {low_high}")
        if len(cfg.speed) != 2 or not 0 <= cfg.speed[0] <= cfg.speed[1] <= 1:
            raise ValueError(f"behaviour.speed must be [low, high] with 0 <= low <= high <= 1, got {cfg.speed}")
        if not 0 <= cfg.push_fraction <= 1:
            raise ValueError(f"behaviour.push_fraction must be in [0, 1], got {cfg.push_fraction}")
        if cfg.kappa < 0 or cfg.noise < 0 or cfg.approach_decisions < 1 or cfg.edge_margin < 0:
            raise ValueError("behaviour.kappa, noise and edge_margin must be >= 0 and approach_decisions >= 1")
        self.cfg, self.rng = cfg, rng
        self.mode = "idle"
        self.left = 0  # decisions left in the current phase
        self.contact = self.normal = self.heading = np.zeros(2)
        self.speed = 0.0

    # ------------------------------------------------------------------ segment choice
    def _contact(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(contact point, outward normal, push direction) [2] each, in the block's own frame."""
        edge = int(self.rng.choice(len(EDGE_LENGTHS), p=EDGE_LENGTHS / EDGE_LENGTHS.sum()))
        margin = min(5.0, EDGE_LENGTHS[edge] / 4)
        along = self.rng.uniform(margin, EDGE_LENGTHS[edge] - margin)
        normal = EDGE_NORMALS[edge]
        push = rotate(-normal, float(self.rng.vonmises(0.0, self.cfg.kappa)) if self.cfg.kappa else
                      float(self.rng.uniform(-np.pi, np.pi)))
        return EDGE_STARTS[edge] + along * EDGE_DIRECTIONS[edge], normal, push

    def _new_segment(self, block: np.ndarray) -> None:
        low, high = self.cfg.speed
        self.speed = float(self.rng.uniform(low, high))
        if self.rng.random() >= self.cfg.push_fraction:
            self.mode = "wander"
            angle = self.rng.uniform(-np.pi, np.pi)
            self.heading = np.array([np.cos(angle), np.sin(angle)])
            self.left = int(self.rng.integers(self.cfg.wander_decisions[0], self.cfg.wander_decisions[1] + 1))
            return
        candidates = [self._contact(block) for _ in range(4)]
        centre = block[:2] + rotate(COG, block[2])
        if np.any(np.minimum(centre, BOARD - centre) < self.cfg.edge_margin):
            inward = BOARD / 2 - centre
            candidates.sort(key=lambda c: -float(rotate(c[2], block[2]) @ inward))
        self.contact, self.normal, self.heading = candidates[0]
        self.mode = "approach"
        self.left = self.cfg.approach_decisions

    # ------------------------------------------------------------------ acting
    def _toward(self, agent: np.ndarray, point: np.ndarray, speed: float) -> np.ndarray:
        step = (point - agent) / STRIDE
        norm = float(np.linalg.norm(step))
        return step if norm <= speed else step * (speed / norm)

    def _approach(self, agent: np.ndarray, block: np.ndarray) -> np.ndarray | None:
        """The action toward the contact, round the block; None once the agent is there."""
        angle = block[2]
        centre = block[:2] + rotate(COG, angle)
        stand = block[:2] + rotate(self.contact + self.normal * (AGENT_RADIUS + 6.0), angle)
        if np.linalg.norm(stand - agent) < 8.0:
            return None
        # Go round on a circle about the centre until the stand point is within 0.6 rad of the
        # agent's bearing, then straight to it.
        bearing = np.arctan2(*(agent - centre)[::-1])
        goal_bearing = np.arctan2(*(stand - centre)[::-1])
        turn = float(np.angle(np.exp(1j * (goal_bearing - bearing))))
        if abs(turn) > 0.6:
            bearing += np.sign(turn) * 0.6
            waypoint = centre + CLEAR_RADIUS * np.array([np.cos(bearing), np.sin(bearing)])
            return self._toward(agent, waypoint, 1.0)
        return self._toward(agent, stand, max(self.speed, 0.5))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """obs with proprio [5] (agent x, y, block x, y, angle) -> action float32 [2] in [-1, 1]."""
        state = np.asarray(obs["proprio"], np.float64)
        agent, block = state[:2], state[2:5]
        for _ in range(3):  # a finished phase hands over to the next within this decision
            if self.mode == "idle" or self.left <= 0:
                self._new_segment(block)
            if self.mode == "approach":
                action = self._approach(agent, block)
                if action is None:
                    self.mode = "push"
                    self.left = int(self.rng.integers(self.cfg.push_decisions[0], self.cfg.push_decisions[1] + 1))
                    continue
                break
            action = self.speed * (rotate(self.heading, block[2]) if self.mode == "push" else self.heading)
            break
        else:
            action = np.zeros(2)
        self.left -= 1
        action = action + self.rng.normal(0.0, self.cfg.noise, 2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
