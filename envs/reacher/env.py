"""dm_control's two-link reacher behind the gymnasium API, with image goals.

One gymnasium step applies the action for `action_repeat` dm_control control steps (0.02 s each)
and renders one frame from the fixed top camera. The physics is dm_control's own reacher model,
stepped exactly as `dm_control.suite` steps it, so a recorded start state and the per-control-step
actions replay in plain dm_control without this project.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import mujoco
import numpy as np
from dm_control.mujoco import wrapper
from dm_control.suite import reacher as dm_reacher
from gymnasium import spaces

from envs._gl import SharedRenderer, shared_renderer
from envs.base import EpisodeSpec, GoalEnv, GoalKind, observation_space
from envs.reacher.behaviour import BehaviourConfig, BehaviourPolicy
from envs.reacher.goals import (
    GOAL_KINDS,
    JOINT_TOLERANCE,
    fingertip_xy,
    joint_errors,
    reach_qpos,
)

# Target radius per task (dm_control's _BIG_TARGET and _SMALL_TARGET); the finger radius is read
# from the model. The task's own success: fingertip centre within target radius + finger radius.
TARGET_SIZE = {"easy": 0.05, "hard": 0.015}
# dm_control samples the target radius uniformly in [0.05, 0.20] around the shoulder.
TARGET_RADIUS_RANGE = (0.05, 0.20)
PHYSICS_STATE_SIZE = 4  # qpos (2) + qvel (2): what dm_control's physics.get_state() returns here
# The state-goal protocol: the goal is the pose this many control steps along a random trajectory.
GOAL_OFFSET = 25
MODEL_FILE = "dm_control/suite/reacher.xml"  # what envs sharing a renderer have in common (envs/_gl.py)


@cache
def _compiled_model() -> wrapper.MjModel:
    """dm_control's reacher model, compiled once per process (0.1 s); each env gets a copy
    (0.01 s), the same bytes a compile gives, so 50 evaluation envs do not compile it 50 times."""
    xml, assets = dm_reacher.get_model_and_assets()
    return wrapper.MjModel.from_xml_string(xml, assets)


class ReacherEnv(GoalEnv):
    """Reacher with pixels, proprioception and a goal image in a dict observation.

    Observation:
        pixels  uint8 [H, W, 3]   the current frame (fixed top camera)
        goal    uint8 [H, W, 3]   the arm posed at the goal, same target and scene
        proprio float32 [4]       joint angles (shoulder, wrist) and their velocities
    Action: float32 [2] in [-1, 1], motor commands, held for `action_repeat` control steps.

    `camera_height` (m) places the fixed top camera: dm_control's 0.75 shows the arena and its walls; at
    0.64 the outstretched arm ends 1-2 px inside the frame, 1.19x larger. Not listed in configs/env/, so
    the datasets and models cached for the default keep their keys: `+env.camera_height=0.64`.

    `reset(seed=..., options=...)` options (all optional):
        goal_kind      "task" (dm_control's target: fingertip on target) or "state" (a joint pose)
        goal_qpos      [2] joint angles of a state goal (required for goal_kind="state")
        physics_state  [4] start state as from `physics.get_state()`; default: dm_control's random init
        target_pos     [2] target x, y; default: dm_control's random target
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    goal_kinds = {
        "state": GoalKind(
            budget=50,
            success=f"every joint within {JOINT_TOLERANCE} rad of the goal pose at the end",
            doc=f"start mid-motion on a held-out uniform-random trajectory, goal the pose {GOAL_OFFSET} control "
            "steps later (stable-worldmodel's protocol)",
        ),
        "task": GoalKind(
            budget=100,
            success="fingertip within target radius + finger radius of the target (dm_control's reward)",
            doc="dm_control's random start at rest and random target; the goal image shows the fingertip on it",
        ),
    }
    probe_groups = {
        "joints": ("sin_shoulder", "cos_shoulder", "sin_wrist", "cos_wrist"),
        "fingertip": ("tip_x", "tip_y"),
    }

    def __init__(
        self,
        task: str = "easy",
        image_size: int = 64,
        action_repeat: int = 1,
        time_limit: int = 1000,
        goal_kind: str = "task",
        render_mode: str | None = None,
        shadows: bool = False,
        camera_height: float = 0.75,
    ):
        if task not in TARGET_SIZE:
            raise ValueError(f"unknown reacher task {task!r}; choose one of {sorted(TARGET_SIZE)}")
        if goal_kind not in GOAL_KINDS:
            raise ValueError(f"unknown goal_kind {goal_kind!r}; choose one of {GOAL_KINDS}")
        if action_repeat < 1 or time_limit < 1 or image_size < 8:
            raise ValueError("action_repeat and time_limit must be >= 1 and image_size >= 8")
        if not 0.62 <= camera_height <= 2.0:
            raise ValueError(f"camera_height={camera_height} m: below 0.62 the outstretched arm leaves the frame; "
                             "choose 0.62-2.0 (dm_control's is 0.75)")
        self.task = task
        self.name = "reacher" if task == "easy" else f"reacher-{task}"
        self.image_size = image_size
        self.action_repeat = action_repeat
        self.time_limit = time_limit  # in control steps, like dm_control's 1000-step (20 s) episodes
        self.default_goal_kind = goal_kind
        self.render_mode = render_mode
        # dm_control's look casts shadows and reflects the arm in the floor: two extra render
        # passes (a 2048^2 shadow map) that make a software-GL frame 4x slower (16 -> 4 ms) and
        # show nothing about the arm that the direct view does not.
        self.shadows = shadows

        # What dm_reacher.Physics.from_xml_string builds, from a copy of the compiled model.
        self.physics = dm_reacher.Physics.from_model(_compiled_model().copy())
        self.physics.named.model.geom_size["target", 0] = TARGET_SIZE[task]
        # The fixed camera looks straight down from this height (dm_control: 0.75 m, which shows the
        # 0.6 m arena with its walls); lower, the arm fills more of the frame: more pixels per radian.
        self.physics.named.model.cam_pos["fixed", 2] = camera_height
        self.control_timestep = float(self.physics.timestep())
        self.success_radius = float(TARGET_SIZE[task] + self.physics.named.model.geom_size["finger", 0])
        # A second MjData poses the arm for goal images without touching the simulated state.
        self._goal_data = mujoco.MjData(self.physics.model.ptr)
        self._renderer: SharedRenderer | None = None

        self.observation_space = observation_space(image_size, 4)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.wrist_range = tuple(float(x) for x in self.physics.named.model.jnt_range["wrist"])

        self.goal_kind = goal_kind
        self.goal_qpos = np.zeros(2)
        self._goal_image: np.ndarray | None = np.zeros((image_size, image_size, 3), np.uint8)
        self._control_steps = 0
        self._reached = False

    # ----------------------------------------------------------------------------- simulator state
    @property
    def qpos(self) -> np.ndarray:
        return self.physics.data.qpos.copy()

    @property
    def target_pos(self) -> np.ndarray:
        return self.physics.named.model.geom_pos["target", :2].copy()

    def get_physics_state(self) -> np.ndarray:
        """[4] float64: dm_control's `physics.get_state()` (qpos, qvel)."""
        return self.physics.get_state().copy()

    def get_sim_state(self) -> np.ndarray:
        """[6] float64: dm_control's physics state (qpos, qvel), then the target x, y."""
        return np.concatenate([self.get_physics_state(), self.target_pos])

    def set_sim_state(self, state: np.ndarray) -> None:
        """Sets the full simulator state [6] (as from get_sim_state)."""
        state = np.asarray(state, np.float64)
        if state.shape != (PHYSICS_STATE_SIZE + 2,):
            raise ValueError(f"a reacher sim state has {PHYSICS_STATE_SIZE + 2} numbers, got shape {state.shape}")
        self._set_physics(state[:PHYSICS_STATE_SIZE], state[PHYSICS_STATE_SIZE:])

    def _set_physics(self, physics_state: np.ndarray, target_pos: np.ndarray) -> None:
        """Sets the physics state and the target. `reset_context` resets MjData first (solver warm
        start included), exactly as dm_control does at reset, so replays are bit-identical."""
        physics_state = np.asarray(physics_state, np.float64)
        if physics_state.shape != (PHYSICS_STATE_SIZE,):
            raise ValueError(f"physics_state must have shape ({PHYSICS_STATE_SIZE},), got {physics_state.shape}")
        with self.physics.reset_context():
            self.physics.set_state(physics_state)
            self.physics.named.model.geom_pos["target", "x"] = float(target_pos[0])
            self.physics.named.model.geom_pos["target", "y"] = float(target_pos[1])

    def _random_sim_state(self) -> tuple[np.ndarray, np.ndarray]:
        """dm_control's reacher initial-state distribution, drawn from gymnasium's np_random."""
        rng = self.np_random
        shoulder = rng.uniform(-np.pi, np.pi)
        wrist = rng.uniform(*self.wrist_range)
        angle = rng.uniform(0, 2 * np.pi)
        radius = rng.uniform(*TARGET_RADIUS_RANGE)
        target = np.array([radius * np.sin(angle), radius * np.cos(angle)])
        return np.array([shoulder, wrist, 0.0, 0.0]), target

    # ----------------------------------------------------------------------------- rendering
    def _render_data(self, data: mujoco.MjData) -> np.ndarray:
        if self._renderer is None:
            # One renderer for every reacher of this frame size and look in the process: each
            # render draws this env's model (its target) and `data` (envs/_gl.py).
            flags = {mujoco.mjtRndFlag.mjRND_SHADOW: self.shadows, mujoco.mjtRndFlag.mjRND_REFLECTION: self.shadows,
                     # The fixed top camera sees only the floor, so the skybox is never in view: not
                     # drawing it leaves every frame as it was and takes about a fifth off its cost
                     # in software GL (docs/DATA.md).
                     mujoco.mjtRndFlag.mjRND_SKYBOX: False}
            self._renderer = shared_renderer(MODEL_FILE, self.physics.model.ptr, self.image_size, self.image_size, flags)
        return self._renderer.render(self.physics.model.ptr, data, "fixed")

    def render_qpos(self, qpos: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3]: the scene with the arm at `qpos` (velocities zero)."""
        self._goal_data.qpos[:] = qpos
        self._goal_data.qvel[:] = 0.0
        mujoco.mj_forward(self.physics.model.ptr, self._goal_data)
        return self._render_data(self._goal_data)

    def render_sim_state(self, state: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3]: the arm at the pose of sim state [6] (the current target drawn)."""
        return self.render_qpos(np.asarray(state)[:2])

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._render_data(self.physics.data.ptr)

    # ----------------------------------------------------------------------------- goals
    def fingertip(self) -> np.ndarray:
        return self.physics.named.data.geom_xpos["finger", :2].copy()

    def evaluate(self) -> dict[str, Any]:
        """Success and distances for the current state and goal (the task's own criteria)."""
        fingertip_distance = float(np.linalg.norm(self.target_pos - self.fingertip()))
        errors = joint_errors(self.qpos, self.goal_qpos)
        max_joint_error = float(np.max(np.abs(errors)))
        if self.goal_kind == "state":
            success, distance = max_joint_error <= JOINT_TOLERANCE, max_joint_error
        else:
            success, distance = fingertip_distance <= self.success_radius, fingertip_distance
        return {
            "success": bool(success),
            "distance": distance,
            "goal_kind": self.goal_kind,
            "fingertip_distance": fingertip_distance,
            "max_joint_error": max_joint_error,
            "joint_errors": errors,
        }

    def reached(self) -> bool:
        return self._reached

    def _set_goal(self, goal_kind: str, goal_qpos: np.ndarray | None) -> None:
        if goal_kind not in GOAL_KINDS:
            raise ValueError(f"unknown goal_kind {goal_kind!r}; choose one of {GOAL_KINDS}")
        if goal_kind == "state":
            if goal_qpos is None:
                raise ValueError("goal_kind='state' needs options['goal_qpos'] (2 joint angles in rad)")
            goal_qpos = np.asarray(goal_qpos, np.float64)
        else:
            # The fingertip on the target: of the two inverse-kinematics solutions, the one nearer
            # the current arm, so the goal image shows the pose a direct reach ends in.
            goal_qpos = reach_qpos(self.target_pos, near=self.qpos, wrist_range=self.wrist_range)
        if goal_qpos.shape != (2,):
            raise ValueError(f"goal_qpos must have shape (2,), got {goal_qpos.shape}")
        self.goal_kind = goal_kind
        self.goal_qpos = goal_qpos
        self._goal_image = None  # rendered with the first observation that shows it

    # ----------------------------------------------------------------------------- gymnasium API
    def _observation(self) -> dict[str, np.ndarray]:
        if self._goal_image is None:
            self._goal_image = self.render_qpos(self.goal_qpos)
        return {
            "pixels": self._render_data(self.physics.data.ptr),
            "goal": self._goal_image.copy(),
            "proprio": self._proprio(),
        }

    def _proprio(self) -> np.ndarray:
        return np.concatenate([self.physics.data.qpos, self.physics.data.qvel]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._reset_state(seed, options)
        return self._observation(), self.evaluate()

    def _reset_state(self, seed: int | None, options: dict[str, Any] | None) -> None:
        """Everything reset does but render: sample_episode needs states, not frames."""
        super().reset(seed=seed)
        options, goal_kind = self._reset_options(options, ("goal_kind", "goal_qpos", "physics_state", "target_pos"))
        physics_state, target_pos = self._random_sim_state()
        if "physics_state" in options:
            physics_state = np.asarray(options["physics_state"], np.float64)
        if "target_pos" in options:
            target_pos = np.asarray(options["target_pos"], np.float64)
        self._set_physics(physics_state, target_pos)
        self._control_steps = 0
        self._reached = False
        self._set_goal(goal_kind, options.get("goal_qpos"))

    def step(self, action):
        info, truncated = self._advance(action)
        return self._observation(), float(info["success"]), False, truncated, info

    def _advance(self, action) -> tuple[dict[str, Any], bool]:
        """Everything step does but render: (info, truncated)."""
        action = np.asarray(action, np.float64)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be 2 finite numbers, got {action!r}")
        action = np.clip(action, -1.0, 1.0)
        for _ in range(self.action_repeat):
            # What dm_control's control.Environment.step does for this task: set, then step.
            self.physics.set_control(action)
            self.physics.step()
            self._reached = self._reached or self.evaluate()["success"]
        self._control_steps += self.action_repeat
        return self.evaluate(), self._control_steps >= self.time_limit

    # ----------------------------------------------------------------------------- data and evaluation
    def probe_targets(self) -> np.ndarray:
        """float32 [6]: sin/cos of shoulder and wrist, fingertip x, y in metres (probe_groups order)."""
        q = self.qpos
        return np.concatenate([[np.sin(q[0]), np.cos(q[0]), np.sin(q[1]), np.cos(q[1])], fingertip_xy(q)]).astype(
            np.float32
        )

    def probe_reached(self, goal_kind: str, now: np.ndarray, goal: np.ndarray, scale: float) -> np.ndarray:
        """bool [B]: the goal kind's rule, its tolerance times `scale`, between the arms the probe targets now [B, 6]
        and goal [B, 6] describe: `state` compares the joint angles (arctan2 of the read sin and cos, which need
        not have unit length), `task` the fingertips (a task's goal image shows the fingertip on the target)."""
        now, goal = np.asarray(now, np.float64), np.asarray(goal, np.float64)
        if goal_kind == "state":
            q_now = np.arctan2(now[:, [0, 2]], now[:, [1, 3]])  # [B, 2] shoulder, wrist
            q_goal = np.arctan2(goal[:, [0, 2]], goal[:, [1, 3]])  # [B, 2]
            return np.abs(joint_errors(q_now, q_goal)).max(1) <= JOINT_TOLERANCE * scale
        if goal_kind == "task":
            return np.linalg.norm(now[:, 4:6] - goal[:, 4:6], axis=1) <= self.success_radius * scale
        raise ValueError(f"unknown goal_kind {goal_kind!r}; choose one of {GOAL_KINDS}")

    def episode_extras(self) -> dict[str, np.ndarray]:
        return {"target_pos": self.target_pos}

    def behaviour_policy(self, rng: np.random.Generator, **settings) -> BehaviourPolicy:
        try:
            cfg = BehaviourConfig(**settings)
        except TypeError as err:
            raise ValueError(f"reacher behaviour settings: {err}; valid: {sorted(BehaviourConfig.__dataclass_fields__)}") from None
        return BehaviourPolicy(cfg, rng, self.wrist_range)

    def sample_episode(self, goal_kind: str, rng: np.random.Generator) -> EpisodeSpec:
        """"state": a held-out trajectory of uniform random actions (one per decision, held for the
        action repeat); the start is a state along it, the goal the pose GOAL_OFFSET control steps
        later. "task": dm_control's random start (at rest) and target."""
        if goal_kind not in self.goal_kinds:
            raise ValueError(f"unknown goal kind {goal_kind!r}; {self.name} offers {list(self.goal_kinds)}")
        budget = self.goal_kinds[goal_kind].budget
        episode_seed = int(rng.integers(2**31 - 1))
        self._reset_state(episode_seed, None)  # states only: rendering would be 90% of the time here
        options = {"goal_kind": goal_kind}
        if goal_kind == "task":
            options.update(physics_state=self.get_physics_state().tolist(), target_pos=self.target_pos.tolist())
            return EpisodeSpec(self.name, goal_kind, episode_seed, options, budget)
        if GOAL_OFFSET % self.action_repeat:
            raise ValueError(f"the state goal is {GOAL_OFFSET} control steps ahead, not a multiple of "
                             f"action_repeat={self.action_repeat}")
        # Walk a random number of decisions first, so the start is mid-motion as on a trajectory.
        warmup = int(rng.integers(2, 11))
        previous, action = self.get_sim_state(), np.zeros(2, np.float32)
        for _ in range(warmup):
            previous = self.get_sim_state()
            action = rng.uniform(-1, 1, 2).astype(np.float32)
            self._advance(action)
        options.update(physics_state=self.get_physics_state().tolist(), target_pos=self.target_pos.tolist())
        for _ in range(GOAL_OFFSET // self.action_repeat):
            self._advance(rng.uniform(-1, 1, 2).astype(np.float32))
        options["goal_qpos"] = self.qpos.tolist()
        return EpisodeSpec(self.name, goal_kind, episode_seed, options, budget,
                           previous_state=previous.tolist(), previous_action=action.tolist())

    def close(self):
        if self._renderer is not None:
            self._renderer.release()
            self._renderer = None


__all__ = ["ReacherEnv"]
