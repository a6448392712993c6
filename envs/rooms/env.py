"""Two rooms: a point mass in a square arena split by a wall with one door (PLDM's navigation task).

One env step applies the action for `action_repeat` control steps (one 0.02 s mj_step each) and
renders one frame from the fixed top-down camera. The model is two_rooms.xml, and resetting and
stepping go through the functions of replay.py, so a record replays bit for bit with MuJoCo alone.

Other layouts of the family (four_rooms.py) subclass TwoRoomsEnv: a layout names its model (the
XML beside this file named after the env), the axes its inner walls split the arena along, and
its goal kinds; walls, doors, sampling, success and replay are all read from the model.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces

from envs._gl import SharedRenderer, shared_renderer
from envs.base import EpisodeSpec, GoalEnv, GoalKind, observation_space
from envs.rooms.behaviour import BehaviourConfig, RandomWalk
from envs.rooms.replay import (
    STATE_SIZE,
    control_step,
    get_state,
    goal_distance,
    load_model,
    model_path,
    set_state,
    success_distance,
)

ARENA_HALF = 0.5  # metres: the free floor is x, y in [-0.5, 0.5] (two_rooms.xml), exactly the camera's view
# The "near" goal: where the behaviour policy is this many control steps after the start.
GOAL_OFFSET = 25
RESET_OPTIONS = ("goal_kind", "start_state", "goal_pos")


class TwoRoomsEnv(GoalEnv):
    """A point mass in two rooms joined by a door, with pixels, proprioception and a goal image.

    Geometry (two_rooms.xml, metres): free floor x, y in [-0.5, 0.5]; a 0.04 thick wall at x = 0
    with one door, y in [-0.1, 0.1] (0.2 wide, centred); agent radius 0.04 (about 5 px of 64).
    Dynamics: mass 1 kg, joint damping 4 N s/m, motor gear 2 N: terminal speed 0.5 m/s per axis
    at full command, time constant 0.25 s (12.5 control steps).

    Observation:
        pixels  uint8 [H, W, 3]   the current frame (top-down, image up = +y, exactly the floor)
        goal    uint8 [H, W, 3]   the same scene with the agent at the goal position
        proprio float32 [4]       x, y (m) and vx, vy (m/s)
    Action: float32 [2] in [-1, 1], motor commands along x and y, held for `action_repeat`
    control steps; values outside [-1, 1] are clipped, non-finite ones refused.

    Success (both goal kinds): the agent's centre within 0.07 m (7% of the arena width, PLDM's
    4.5 px of 64) of the goal at the end of the budget. Across the wall it cannot be reached: the
    nearest a centre gets to the wall plane is 0.06 m (half the wall 0.02 + radius 0.04), so
    centres on opposite sides are at least 0.12 m apart in x.

    Budget of "rooms": 215 control steps. Starts and goals uniform in opposite rooms (0.05 m
    clearance: radius + 0.01) have a shortest path through the door (a visibility graph on the
    door's corner points (+-0.06, +-0.06) in the space of agent centres) of median 0.72 m (90th
    percentile 0.92 m, max 1.17 m, over 2000 pairs); at 0.5 m/s that is 72 control steps (0.02 s);
    three times that, rounded to a multiple of 5, is 215.

    `reset(seed=..., options=...)` options (all optional; any other key is an error):
        goal_kind    "rooms" or "near" (which goal kind the episode belongs to)
        start_state  [4] sim state (x, y, vx, vy); default: uniform in the free space, at rest
        goal_pos     [2] goal x, y, on the floor (|x|, |y| <= 0.5); default: uniform in the free space (either room)
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    name = "two-rooms"
    split_axes: tuple[int, ...] = (0,)
    """Axes (0 = x, 1 = y) along which inner walls through the centre split the arena into rooms: a
    room is a sign per axis (two-rooms: x < 0 or x > 0), its opposite room every sign flipped."""
    goal_kinds = {
        "rooms": GoalKind(
            budget=215,
            success="agent centre within 0.07 m of the goal position at the end",
            doc="start at rest and goal uniform in opposite rooms (PLDM / EB-JEPA two-rooms protocol)",
        ),
        "near": GoalKind(
            budget=50,
            success="agent centre within 0.07 m of the goal position at the end",
            doc=f"start mid-motion on a held-out behaviour trajectory, goal where it is {GOAL_OFFSET} control steps "
            "later (stable-worldmodel's protocol)",
        ),
    }
    # Velocity is not in one frame (a probe on a single frame's z read it at R^2 -0.03), so only
    # the position is a probe target.
    probe_groups = {"position": ("x", "y")}
    default_behaviour: dict[str, Any] = {}

    def __init__(
        self,
        image_size: int = 64,
        action_repeat: int = 5,
        time_limit: int = 1000,
        goal_kind: str = "rooms",
        render_mode: str | None = None,
    ):
        if goal_kind not in self.goal_kinds:
            raise ValueError(f"unknown goal_kind {goal_kind!r}; choose one of {list(self.goal_kinds)}")
        if action_repeat < 1 or time_limit < 1 or image_size < 8:
            raise ValueError("action_repeat and time_limit must be >= 1 and image_size >= 8")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.image_size = image_size
        self.action_repeat = action_repeat
        self.time_limit = time_limit  # control steps
        self.default_goal_kind = goal_kind
        self.render_mode = render_mode

        self.model = load_model(self.name)
        self.data = mujoco.MjData(self.model)
        self.control_timestep = float(self.model.opt.timestep)
        # A second MjData poses the agent for goal images and render_sim_state, so rendering never
        # touches the simulated state.
        self._pose_data = mujoco.MjData(self.model)
        self._renderer: SharedRenderer | None = None
        self.success_distance = success_distance(self.model)
        self.agent_radius = float(self.model.geom("agent").size[0])
        self.clearance = float(self.model.numeric("wall_clearance").data[0])
        walls = [self.model.geom(i) for i in range(self.model.ngeom) if self.model.geom(i).name.startswith("wall")]
        # Walls as boxes in the plane (centre x, y, half-width, half-height), grown by the agent
        # radius: the agent touches a wall exactly when its centre enters the grown box.
        self.obstacles = np.array([[*w.pos[:2], *(w.size[:2] + self.agent_radius)] for w in walls])
        # The distance from the centre lines, along every split axis, beyond which an agent centre is
        # inside a room, clear of the doorways by `clearance`. Every wall is equally thick (0.04 m):
        # half of it is the smallest half-size of any wall box.
        half_thickness = float(min(w.size[:2].min() for w in walls))
        self.room_edge = half_thickness + self.agent_radius + self.clearance

        self.observation_space = observation_space(image_size, 4)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

        self.goal_kind = goal_kind
        self.goal_pos = np.zeros(2)
        self._goal_image: np.ndarray | None = np.zeros((image_size, image_size, 3), np.uint8)
        self._control_steps = 0
        self._reached = False
        self._episode = False  # no start and goal until the first reset: step() refuses, evaluate() would report success

    # ----------------------------------------------------------------------------- simulator state
    def get_sim_state(self) -> np.ndarray:
        """float64 [4]: qpos x, y (m), qvel x, y (m/s)."""
        return get_state(self.data)

    def set_sim_state(self, state: np.ndarray) -> None:
        """Sets sim state [4]; MjData is reset first, so replays from it are bit-identical."""
        set_state(self.model, self.data, state)

    def is_free(self, pos: np.ndarray, margin: float = 0.0) -> bool:
        """Whether an agent centred at pos [2] is inside the arena and at least `margin` metres
        from every wall."""
        pos = np.asarray(pos, np.float64)
        return bool(np.all(np.abs(pos) <= ARENA_HALF) and np.all(self.wall_gaps(pos) >= margin))

    def wall_gaps(self, pos: np.ndarray) -> np.ndarray:
        """Metres between an agent centred at pos [..., 2] and each wall's surface: [..., walls]
        (0 where it touches or overlaps one)."""
        pos = np.asarray(pos, np.float64)[..., None, :]  # [..., 1, 2] against the walls' [walls, 2]
        return np.linalg.norm(np.maximum(np.abs(pos - self.obstacles[:, :2]) - self.obstacles[:, 2:], 0.0), axis=-1)

    def in_room(self, pos: np.ndarray, room: tuple[int, ...]) -> bool:
        """Whether a centre at pos [2] is inside `room` (one sign per split axis), clear of the
        doorways: |pos| >= room_edge along every split axis, on the room's side."""
        return all(np.sign(pos[a]) == side and abs(pos[a]) >= self.room_edge for a, side in zip(self.split_axes, room))

    def random_position(self, rng: np.random.Generator, room: tuple[int, ...] | None = None) -> np.ndarray:
        """[2] uniform over the free space (agent surface >= `clearance` from every wall): anywhere
        for room=None, else inside `room` (in_room)."""
        if room is not None and len(room) != len(self.split_axes):
            raise ValueError(f"a {self.name} room is {len(self.split_axes)} sign(s), got {room!r}")
        while True:  # rejection sampling; two-rooms: about 70% of draws are free, 35% in a given room
            pos = rng.uniform(-ARENA_HALF, ARENA_HALF, 2)
            if not self.is_free(pos, self.clearance):
                continue
            if room is None or self.in_room(pos, room):
                return pos

    # ----------------------------------------------------------------------------- rendering
    def _render_data(self, data: mujoco.MjData) -> np.ndarray:
        if self._renderer is None:
            # Shadow map and multisampling off before the GL context exists: they size its buffers.
            # Set on every instance, so all models stay alike whichever made the shared context.
            self.model.vis.quality.shadowsize = 0
            self.model.vis.quality.offsamples = 0
            self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, self.image_size)
            self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, self.image_size)
            # One renderer for every env of this layout and frame size in the process; each
            # render draws this env's model and `data` (envs/_gl.py).
            off = {mujoco.mjtRndFlag.mjRND_SHADOW: False, mujoco.mjtRndFlag.mjRND_REFLECTION: False}
            self._renderer = shared_renderer(str(model_path(self.name)), self.model, self.image_size, self.image_size, off)
        return self._renderer.render(self.model, data, "top")

    def render_position(self, pos: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3]: the scene with the agent at pos [2] (m)."""
        set_state(self.model, self._pose_data, np.concatenate([np.asarray(pos, np.float64), np.zeros(2)]))
        return self._render_data(self._pose_data)

    def render_sim_state(self, state: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3]: the scene at sim state [4], without changing the simulation."""
        state = np.asarray(state, np.float64)
        if state.shape != (STATE_SIZE,):
            raise ValueError(f"a {self.name} sim state has {STATE_SIZE} numbers, got shape {state.shape}")
        return self.render_position(state[:2])

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._render_data(self.data)

    # ----------------------------------------------------------------------------- goals
    def evaluate(self) -> dict[str, Any]:
        """{"success": bool, "distance": agent centre to goal (m), "same_room": whether agent and
        goal are on the same side of every inner wall (split_axes)}."""
        distance = goal_distance(self.data, self.goal_pos)
        return {
            "success": distance < self.success_distance,
            "distance": distance,
            "same_room": all((self.data.qpos[a] < 0) == (self.goal_pos[a] < 0) for a in self.split_axes),
        }

    def reached(self) -> bool:
        return self._reached

    # ----------------------------------------------------------------------------- gymnasium API
    def _observation(self) -> dict[str, np.ndarray]:
        if self._goal_image is None:
            self._goal_image = self.render_position(self.goal_pos)
        return {
            "pixels": self._render_data(self.data),
            "goal": self._goal_image.copy(),
            "proprio": self._proprio(),
        }

    def _proprio(self) -> np.ndarray:
        return self.get_sim_state().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._reset_state(seed, options)
        return self._observation(), self.evaluate()

    def _reset_state(self, seed: int | None, options: dict[str, Any] | None) -> None:
        """Everything reset does but render: sample_episode needs states, not frames."""
        super().reset(seed=seed)
        options, goal_kind = self._reset_options(options, RESET_OPTIONS)
        # Both draws happen whatever the options, so a seed fixes the same start and goal with or without them.
        start = np.concatenate([self.random_position(self.np_random), np.zeros(2)])
        goal = self.random_position(self.np_random)
        if "start_state" in options:
            start = np.asarray(options["start_state"], np.float64)
        if "goal_pos" in options:
            goal = np.asarray(options["goal_pos"], np.float64)
            if goal.shape != (2,) or not np.all(np.isfinite(goal)):
                raise ValueError(f"goal_pos must be 2 finite numbers (x, y in m), got {options['goal_pos']!r}")
            if not np.all(np.abs(goal) <= ARENA_HALF):  # no centre gets there: success could never be reached
                raise ValueError(f"goal_pos={options['goal_pos']!r} lies off the floor; x and y must lie in "
                                 f"[{-ARENA_HALF}, {ARENA_HALF}] m")
        self.set_sim_state(start)
        self._control_steps = 0
        self._reached = False
        self.goal_kind = goal_kind
        self.goal_pos = goal
        self._goal_image = None  # rendered with the first observation that shows it
        self._episode = True

    def step(self, action):
        info, truncated = self._advance(action)
        return self._observation(), float(info["success"]), False, truncated, info

    def _advance(self, action) -> tuple[dict[str, Any], bool]:
        """Everything step does but render: (info, truncated)."""
        if not self._episode:
            raise RuntimeError(f"{self.name}: call reset() before step(); until then there is no start or goal")
        action = np.asarray(action, np.float64)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be 2 finite numbers, got {action!r}")
        for _ in range(self.action_repeat):
            control_step(self.model, self.data, action)  # clips to [-1, 1]
            self._reached = self._reached or goal_distance(self.data, self.goal_pos) < self.success_distance
        self._control_steps += self.action_repeat
        return self.evaluate(), self._control_steps >= self.time_limit

    # ----------------------------------------------------------------------------- data and evaluation
    def probe_targets(self) -> np.ndarray:
        """float32 [2]: the agent's x, y (m)."""
        return self.get_sim_state()[:2].astype(np.float32)

    def episode_extras(self) -> dict[str, np.ndarray]:
        return {}

    def behaviour_policy(self, rng: np.random.Generator, **settings) -> RandomWalk:
        try:
            cfg = BehaviourConfig(**settings)
        except TypeError as err:
            raise ValueError(
                f"{self.name} behaviour settings: {err}; valid: {sorted(BehaviourConfig.__dataclass_fields__)}"
            ) from None
        return RandomWalk(cfg, rng, self.obstacles)

    def sample_episode(self, goal_kind: str, rng: np.random.Generator) -> EpisodeSpec:
        """"rooms": start at rest and goal uniform in opposite rooms (the start's room drawn, one
        sign per split axis; the goal's room has every sign flipped: across the one wall of
        two-rooms, diagonally across the four-rooms ring).
        "near": from a random start at rest, the behaviour policy walks 2-10 env steps to the
        start (kept with its velocity), then GOAL_OFFSET control steps more to the goal."""
        if goal_kind not in self.goal_kinds:
            raise ValueError(f"unknown goal kind {goal_kind!r}; {self.name} offers {list(self.goal_kinds)}")
        budget = self.goal_kinds[goal_kind].budget
        episode_seed = int(rng.integers(2**31 - 1))
        if goal_kind == "rooms":
            room = tuple(1 if rng.integers(2) else -1 for _ in self.split_axes)
            start, goal = self.random_position(rng, room), self.random_position(rng, tuple(-s for s in room))
            options = {"goal_kind": goal_kind, "start_state": [*map(float, start), 0.0, 0.0],
                       "goal_pos": [float(g) for g in goal]}
            return EpisodeSpec(self.name, goal_kind, episode_seed, options, budget)
        if GOAL_OFFSET % self.action_repeat:
            raise ValueError(f"the near goal is {GOAL_OFFSET} control steps ahead, not a multiple of "
                             f"action_repeat={self.action_repeat}")
        origin = self.random_position(rng)
        # States only, no frames (the behaviour policy reads proprio alone): rendering would be
        # most of the time here.
        self._reset_state(episode_seed, {"start_state": [*origin, 0.0, 0.0], "goal_pos": origin})
        policy = self.behaviour_policy(rng, **self.default_behaviour)
        previous, action = self.get_sim_state(), np.zeros(2, np.float32)
        for _ in range(int(rng.integers(2, 11))):
            previous, action = self.get_sim_state(), policy.act({"proprio": self._proprio()})
            self._advance(action)
        start = self.get_sim_state()
        # Continue from a freshly set start, as the episode's reset will: the goal is then exactly
        # where replaying these actions from the episode's start leads.
        self.set_sim_state(start)
        for _ in range(GOAL_OFFSET // self.action_repeat):
            self._advance(policy.act({"proprio": self._proprio()}))
        options = {"goal_kind": goal_kind, "start_state": start.tolist(), "goal_pos": self.data.qpos.tolist()}
        return EpisodeSpec(self.name, goal_kind, episode_seed, options, budget,
                           previous_state=previous.tolist(), previous_action=[float(a) for a in action])

    def close(self):
        if self._renderer is not None:
            self._renderer.release()
            self._renderer = None


__all__ = ["TwoRoomsEnv"]
