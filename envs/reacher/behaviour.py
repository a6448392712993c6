"""The behaviour policy that generates the offline agent video.

How it covers the workspace: an episode starts from dm_control's random initial state (shoulder
uniform on the circle, wrist uniform in its range, target anywhere in the reachable disc), then
switches every few steps between three modes:
  - uniform: independent uniform actions in [-1, 1], the planner-free random policy (also the
    distribution the state-goal protocol draws its start and goal from);
  - correlated: temporally correlated noise (an AR(1) process), which makes long sweeps, so the
    arm visits far poses and high speeds that independent noise rarely reaches;
  - reach: a noisy PD controller towards a random joint target, which moves, brakes and holds
    still at arbitrary poses: the reach-and-stop motion a planner has to predict.
Every action is clipped to the action bounds before use, and the clipped action is what is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.reacher.goals import wrap_angle

MODES = ("uniform", "correlated", "reach")


@dataclass
class BehaviourConfig:
    """Settings of the behaviour policy (one per field)."""

    mode_weights: list[float] = field(default_factory=lambda: [0.3, 0.3, 0.4])
    """Probabilities of the uniform, correlated and reach modes, in that order."""
    segment_steps: list[int] = field(default_factory=lambda: [5, 25])
    """A mode is kept for a number of steps drawn uniformly from this [low, high] range."""
    correlation: float = 0.8
    """AR(1) coefficient of the correlated mode (0 = independent, near 1 = slow sweeps)."""
    reach_gain: list[float] = field(default_factory=lambda: [0.5, 1.5])
    """Proportional gain range (action per radian) of the reach controller; higher gains ring at
    one decision every 5 control steps."""
    reach_damping: float = 0.1
    """Velocity gain of the reach controller (action per rad/s)."""
    reach_noise: float = 0.1
    """Std of Gaussian noise added to the reach controller's action."""


class BehaviourPolicy:
    """Switches between uniform, correlated and reach modes; see the module docstring."""

    def __init__(self, cfg: BehaviourConfig, rng: np.random.Generator, wrist_range: tuple[float, float]):
        weights = np.asarray(cfg.mode_weights, np.float64)
        if weights.shape != (3,) or weights.min() < 0 or weights.sum() <= 0:
            raise ValueError(f"behaviour.mode_weights must be 3 non-negative numbers, got {cfg.mode_weights}")
        self.cfg = cfg
        self.weights = weights / weights.sum()
        self.rng = rng
        self.wrist_range = wrist_range
        self.steps_left = 0
        self.mode = "uniform"
        self.noise = np.zeros(2)
        self.target = np.zeros(2)
        self.gain = 1.0

    def _new_segment(self) -> None:
        low, high = self.cfg.segment_steps
        self.steps_left = int(self.rng.integers(low, high + 1))
        self.mode = MODES[int(self.rng.choice(3, p=self.weights))]
        self.target = np.array([self.rng.uniform(-np.pi, np.pi), self.rng.uniform(*self.wrist_range)])
        self.gain = float(self.rng.uniform(*self.cfg.reach_gain))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """obs with proprio [4] (qpos, qvel) -> action float32 [2] in [-1, 1]."""
        proprio = obs["proprio"]
        if self.steps_left <= 0:
            self._new_segment()
        self.steps_left -= 1
        rho = self.cfg.correlation
        # The AR(1) state runs in every mode so that switching into "correlated" starts smoothly.
        self.noise = rho * self.noise + np.sqrt(1 - rho**2) * self.rng.normal(size=2)
        if self.mode == "uniform":
            action = self.rng.uniform(-1, 1, size=2)
        elif self.mode == "correlated":
            action = self.noise
        else:
            qpos, qvel = proprio[:2], proprio[2:]
            error = np.array([wrap_angle(self.target[0] - qpos[0]), self.target[1] - qpos[1]])
            action = self.gain * error - self.cfg.reach_damping * qvel
            action = action + self.cfg.reach_noise * self.rng.normal(size=2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
