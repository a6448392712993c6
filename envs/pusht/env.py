"""Push-T: push a T-shaped block to a goal pose with a disc agent, from pixels (gym-pusht's physics).

One env step applies the action for `action_repeat` control steps (one gym-pusht step of 0.1 s
each) and draws one frame (draw.py). Resetting and stepping go through replay.py, so a record
replays bit for bit with gym-pusht alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces
from shapely.geometry import Point

from envs.base import EpisodeSpec, GoalEnv, GoalKind, observation_space
from envs.pusht.behaviour import BehaviourConfig, ScriptedPusher
from envs.pusht.draw import AGENT_RADIUS, draw
from envs.pusht.replay import (
    STATE_SIZE,
    control_step,
    get_state,
    make_sim,
    outcome,
    pose,
    set_state,
    t_polygon,
)

GOAL_OFFSET = 25
"""push: the goal is where the behaviour trajectory is this many control steps after the start."""
TARGET_POSE = (256.0, 256.0, math.pi / 4)
"""T: gym-pusht's fixed target (block origin x, y, angle), from its `_setup`."""
TARGET_AGENT = (284.0, 228.0)
"""T: where the goal image shows the agent: 35 px off the middle of the bar's outer edge, as if
it had just pushed the T home from that side (the T's success ignores the agent)."""
RESET_OPTIONS = ("goal_kind", "start_state", "goal")


class PushTEnv(GoalEnv):
    """Push-T with pixels, a low-dimensional state and goal images.

    Observation:
        pixels  uint8 [H, W, 3]   the board from above (draw.py)
        goal    uint8 [H, W, 3]   the board at the goal pose, drawn the same way
        proprio float32 [5]       agent x, y, block origin x, y (board px of 512), block angle (rad):
                                  gym-pusht's state observation, its angle not wrapped
    Action: float32 [2] in [-1, 1]: the PD target's displacement from the agent, 20 board px per
    unit (replay.py), held for `action_repeat` control steps; clipped, non-finite refused.

    Goal kinds (budgets in control steps of 0.1 s):
        push  start mid-motion on a held-out behaviour trajectory, goal its state 25 control steps
              later; budget 50; success: L2 over (agent x, y, block x, y) < 20 px and block angle
              within pi/9 (DINO-WM / stable-worldmodel's protocol)
        T     random start (gym-pusht's reset distribution), the block to gym-pusht's fixed target;
              budget 300; success: coverage of the target > 0.95 (Diffusion Policy's task)

    `reset(seed=..., options=...)` options (all optional; any other key is an error):
        goal_kind    "push" or "T"
        start_state  [10] full state (replay.py: set_state); default: a random start at rest
        goal         [5] goal pose (agent x, y, block x, y, angle); default: push a random pose,
                     T the fixed target with the agent at TARGET_AGENT
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    name = "pusht"
    goal_kinds = {
        "push": GoalKind(
            budget=50,
            success="L2 over (agent x, y, block x, y) below 20 board px of 512 and block angle within pi/9 of the goal",
            doc=f"start mid-motion on a held-out behaviour trajectory, goal its state {GOAL_OFFSET} control steps "
            "(2.5 s) later (stable-worldmodel / DINO-WM protocol)",
        ),
        "T": GoalKind(
            budget=300,
            success="the block covers more than 95% of gym-pusht's fixed target T",
            doc="start at rest from gym-pusht's reset distribution, block to the fixed target (256, 256, pi/4)",
        ),
    }
    # The block's centre of gravity, not its origin: the origin (the middle of the bar's top edge)
    # moves round the T's centre as the angle changes, so a linear probe of where the T's pixels
    # are reads it poorly (docs/NOTEBOOK.md, "Push-T from pixels").
    probe_groups = {"agent": ("agent_x", "agent_y"), "block": ("block_x", "block_y"),
                    "angle": ("angle_cos", "angle_sin")}
    default_behaviour: dict[str, Any] = {}

    def __init__(
        self,
        image_size: int = 64,
        action_repeat: int = 5,
        time_limit: int = 1000,
        goal_kind: str = "push",
        render_mode: str | None = None,
    ):
        if goal_kind not in self.goal_kinds:
            raise ValueError(f"unknown goal_kind {goal_kind!r}; choose one of {list(self.goal_kinds)}")
        if action_repeat < 1 or time_limit < 1 or not 8 <= image_size <= 1024:
            raise ValueError("action_repeat and time_limit must be >= 1 and image_size in [8, 1024]")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.image_size = image_size
        self.action_repeat = action_repeat
        self.time_limit = time_limit  # control steps
        self.default_goal_kind = goal_kind
        self.render_mode = render_mode
        self.control_timestep = 0.1  # gym-pusht: 10 physics steps of 0.01 s per step
        self.sim = make_sim()
        self._scratch = make_sim()  # poses states for render_sim_state without touching self.sim
        self.observation_space = observation_space(image_size, 5)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.goal_kind = goal_kind
        self.goal = np.zeros(5)
        self._goal_image: np.ndarray | None = None
        self._control_steps = 0
        self._reached = False
        self._started = False
        set_state(self.sim, self._random_start(np.random.default_rng(0)))

    # ----------------------------------------------------------------------------- simulator state
    def get_sim_state(self) -> np.ndarray:
        """float64 [10]: agent x, y, vx, vy, block CoG x, y, angle, vx, vy, angular velocity (replay.py)."""
        return get_state(self.sim)

    def set_sim_state(self, state: np.ndarray) -> None:
        """Sets the full state [10] on a fresh pymunk space; the goal is not changed."""
        set_state(self.sim, state)

    def _random_start(self, rng: np.random.Generator) -> np.ndarray:
        """[10] at rest, drawn as gym-pusht's reset draws (agent in [50, 450]^2, block origin in
        [100, 400]^2, angle uniform), again until the agent's disc is clear of the block."""
        while True:
            agent = rng.integers(50, 450, 2).astype(np.float64)
            block = rng.integers(100, 400, 2).astype(np.float64)
            angle = rng.uniform(-np.pi, np.pi)
            state = np.zeros(STATE_SIZE)
            state[:2], state[6] = agent, angle
            set_state(self._scratch, state)  # to find the CoG of a block whose origin is `block`
            self._scratch.block.position = tuple(block)
            state[4:6] = get_state(self._scratch)[4:6]
            if t_polygon(pose(self._scratch)).distance(Point(*agent)) > AGENT_RADIUS + 2.0:
                return state

    # ----------------------------------------------------------------------------- rendering
    def render_pose(self, p: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3]: the board at pose [5] (agent x, y, block x, y, angle)."""
        return draw(p, self.image_size)

    def render_sim_state(self, state: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3]: the board at state [10], without changing the simulation."""
        set_state(self._scratch, state)
        return self.render_pose(pose(self._scratch))

    def render(self) -> np.ndarray | None:
        return self.render_pose(pose(self.sim)) if self.render_mode == "rgb_array" else None

    # ----------------------------------------------------------------------------- goals
    def evaluate(self) -> dict[str, Any]:
        """{"success": bool, "distance": the number the goal kind's rule thresholds (push: L2 over
        agent and block positions, px; T: 1 - coverage of the goal's T), "angle_error" (rad),
        "block_error" (px)}; never a success before the first reset."""
        return self._info(outcome(self.goal_kind, pose(self.sim), self.goal))

    def _info(self, result: dict[str, Any]) -> dict[str, Any]:
        """evaluate()'s dict from outcome()'s."""
        return {**result, "success": bool(result["success"]) and self._started}

    def reached(self) -> bool:
        return self._reached

    # ----------------------------------------------------------------------------- gymnasium API
    def _observation(self) -> dict[str, np.ndarray]:
        if self._goal_image is None:
            self._goal_image = self.render_pose(self.goal)
        return {"pixels": self.render_pose(pose(self.sim)), "goal": self._goal_image.copy(),
                "proprio": self._proprio()}

    def _proprio(self) -> np.ndarray:
        return pose(self.sim).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._reset_state(seed, options)
        return self._observation(), self.evaluate()

    def _reset_state(self, seed: int | None, options: dict[str, Any] | None) -> None:
        """Everything reset does but draw: sample_episode needs states, not frames."""
        super().reset(seed=seed)
        options, goal_kind = self._reset_options(options, RESET_OPTIONS)
        # Both draws happen whatever the options, so a seed fixes the same start and goal with or without them.
        start = self._random_start(self.np_random)
        other = self._random_start(self.np_random)
        set_state(self._scratch, other)
        goal = np.array([*TARGET_AGENT, *TARGET_POSE]) if goal_kind == "T" else pose(self._scratch)
        if "start_state" in options:
            start = np.asarray(options["start_state"], np.float64)
        if "goal" in options:
            goal = np.asarray(options["goal"], np.float64)
            if goal.shape != (5,) or not np.all(np.isfinite(goal)):
                raise ValueError(f"goal must be 5 finite numbers (agent x, y, block x, y, angle), got {options['goal']!r}")
        self.set_sim_state(start)
        self._control_steps = 0
        self._reached = False
        self._started = True
        self.goal_kind = goal_kind
        self.goal = goal
        self._goal_image = None  # drawn with the first observation that shows it

    def step(self, action):
        info, truncated = self._advance(action)
        return self._observation(), float(info["success"]), False, truncated, info

    def _advance(self, action) -> tuple[dict[str, Any], bool]:
        """Everything step does but draw: (info, truncated)."""
        if not self._started:
            raise RuntimeError("step() before reset(): call reset() first")
        action = np.asarray(action, np.float64)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be 2 finite numbers, got {action!r}")
        for _ in range(self.action_repeat):
            control_step(self.sim, action)  # clips to [-1, 1]
            result = outcome(self.goal_kind, pose(self.sim), self.goal)
            self._reached = self._reached or result["success"]
        self._control_steps += self.action_repeat
        return self._info(result), self._control_steps >= self.time_limit  # the last step's, judged once

    # ----------------------------------------------------------------------------- data and evaluation
    def probe_targets(self) -> np.ndarray:
        """float32 [6]: agent x, y, block centre of gravity x, y (board px), cos and sin of the block angle."""
        s = get_state(self.sim)
        return np.array([s[0], s[1], s[4], s[5], math.cos(s[6]), math.sin(s[6])], np.float32)

    def probe_reached(self, goal_kind: str, now: np.ndarray, goal: np.ndarray, scale: float) -> np.ndarray:
        """bool [B]: outcome()'s rule, tolerances times `scale`, between the poses probe targets now [B, 6] and
        goal [B, 6] describe (a read angle's (cos, sin) need not have unit length)."""
        a, b = self._probe_pose(now), self._probe_pose(goal)  # [B, 5] each
        return np.array([outcome(goal_kind, x, y, scale)["success"] for x, y in zip(a, b)], bool)

    def _probe_pose(self, targets: np.ndarray) -> np.ndarray:
        """probe targets [B, 6] -> poses [B, 5] (agent x, y, block origin x, y, angle): the origin is the
        centre of gravity less the body's own offset to it, turned by the angle."""
        targets = np.asarray(targets, np.float64)
        angle = np.arctan2(targets[:, 5], targets[:, 4])  # [B]
        cx, cy = self.sim.block.center_of_gravity  # in the block's frame
        c, s = np.cos(angle), np.sin(angle)
        origin = targets[:, 2:4] - np.stack([cx * c - cy * s, cx * s + cy * c], 1)  # [B, 2]
        return np.concatenate([targets[:, :2], origin, angle[:, None]], 1)

    def episode_extras(self) -> dict[str, np.ndarray]:
        return {}

    def behaviour_policy(self, rng: np.random.Generator, **settings) -> ScriptedPusher:
        try:
            cfg = BehaviourConfig(**settings)
        except TypeError as err:
            raise ValueError(
                f"{self.name} behaviour settings: {err}; valid: {sorted(BehaviourConfig.__dataclass_fields__)}"
            ) from None
        return ScriptedPusher(cfg, rng)

    def sample_episode(self, goal_kind: str, rng: np.random.Generator) -> EpisodeSpec:
        """push: from a random start at rest the pusher acts 4-20 decisions to the start (kept
        with its velocities), then GOAL_OFFSET control steps more to the goal.
        T: a random start at rest; the goal is the fixed target."""
        if goal_kind not in self.goal_kinds:
            raise ValueError(f"unknown goal kind {goal_kind!r}; {self.name} offers {list(self.goal_kinds)}")
        budget = self.goal_kinds[goal_kind].budget
        episode_seed = int(rng.integers(2**31 - 1))
        origin = self._random_start(rng)
        if goal_kind == "T":
            options = {"goal_kind": goal_kind, "start_state": origin.tolist(), "goal": [*TARGET_AGENT, *TARGET_POSE]}
            return EpisodeSpec(self.name, goal_kind, episode_seed, options, budget)
        if GOAL_OFFSET % self.action_repeat:
            raise ValueError(f"the push goal is {GOAL_OFFSET} control steps ahead, not a multiple of "
                             f"action_repeat={self.action_repeat}")
        # States only, no frames (the pusher reads proprio alone): drawing would be most of the time.
        self._reset_state(episode_seed, {"goal_kind": goal_kind, "start_state": origin})
        policy = self.behaviour_policy(rng, **self.default_behaviour)
        previous, action = self.get_sim_state(), np.zeros(2, np.float32)
        for _ in range(int(rng.integers(4, 21))):
            previous, action = self.get_sim_state(), policy.act({"proprio": self._proprio()})
            self._advance(action)
        start = self.get_sim_state()
        # Continue from a freshly set start, as the episode's reset will (a fresh space): the goal
        # is then exactly where replaying these actions from the episode's start leads.
        self.set_sim_state(start)
        for _ in range(GOAL_OFFSET // self.action_repeat):
            self._advance(policy.act({"proprio": self._proprio()}))
        options = {"goal_kind": goal_kind, "start_state": start.tolist(), "goal": pose(self.sim).tolist()}
        return EpisodeSpec(self.name, goal_kind, episode_seed, options, budget,
                           previous_state=previous.tolist(), previous_action=[float(a) for a in action])

    def close(self):
        """Nothing to free: gym-pusht never opens a window here and frames are drawn with OpenCV."""

__all__ = ["PushTEnv"]
