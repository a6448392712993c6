"""The declared environment interface: everything `agent/` and `world_model/` may rely on.

An env family lives in its own folder `envs/<family>/` and exposes, in its `__init__.py`:
    ENVS:   {registered name: (GoalEnv subclass, fixed constructor keyword arguments)}
    replay: replay(record) -> {"final_state", "success", "distance"}, written against the
            simulator's own public API only, so a record replays without this project.
`envs/__init__.py` lists the families, one line each. Nothing else in the project knows joint
names, tolerances, action sizes or goal samplers: they reach it through this interface.

Units: time in control steps (the simulator's own step, e.g. 0.02 s); one env step applies the
action for `action_repeat` control steps and renders one frame. Budgets are in control steps.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces


@dataclass(frozen=True)
class GoalKind:
    """One kind of goal an env offers (one evaluation protocol)."""

    budget: int
    """Control steps an episode may use. Success is reported twice: at the end of the budget (our
    rule) and at any control step within it (the anchors' rule: an episode succeeds the first time
    the criterion holds; GoalEnv.reached)."""
    success: str
    """The success rule in one line (e.g. "every joint within 0.05 rad of the goal")."""
    doc: str
    """Where start and goal come from, in one line."""


@dataclass
class EpisodeSpec:
    """Everything that fixes one evaluation episode; JSON-serialisable, so records can carry it.

    `env.reset(seed=spec.seed, options=spec.options)` starts it. `options` is the env family's own
    (lists of floats): the agent never reads inside it.
    """

    env: str
    goal_kind: str
    seed: int
    options: dict[str, Any]
    budget: int
    """Control steps."""
    previous_state: list[float] | None = None
    """Simulator state one decision before the start, when the start is taken mid-motion."""
    previous_action: list[float] | None = None
    """The action [A] that led from previous_state to the start."""


class BehaviourPolicy(Protocol):
    """Acts while offline video is recorded (one instance per episode, seeded by the collector)."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """obs (as from reset/step) -> action float32 [A] within the action bounds."""
        ...


class GoalEnv(gym.Env):
    """A goal-image environment behind the gymnasium API.

    Observation (gymnasium Dict):
        pixels  uint8 [H, W, 3]   the current frame, H = W = image_size
        goal    uint8 [H, W, 3]   the goal rendered in the same scene
        proprio float32 [P]       a low-dimensional state vector (positions, velocities)
    Action: `action_space`, a gymnasium Box [A] of any size and bounds.
    `reset(seed=..., options=...)`: options may include "goal_kind" and whatever the family's
    episode specs put there; `step` returns info = evaluate().
    Rendering is the family's own; `close()` frees it. The MuJoCo families share one offscreen
    renderer among all their instances of one model file and frame size in a process
    (envs/_gl.py: shared_renderer), so a batch of evaluation envs costs one GL context; a family
    that does not use it renders as it likes.
    """

    name: str
    """The registered name (what records and datasets store)."""
    image_size: int
    """Frame side in pixels."""
    action_repeat: int
    """Control steps per env step (one frame, one decision)."""
    control_timestep: float
    """Seconds of simulated time per control step (videos play at 1 / control_timestep frames per second)."""
    goal_kinds: ClassVar[dict[str, GoalKind]]
    """Goal kinds in a fixed order (the order seeds evaluation episodes)."""
    probe_groups: ClassVar[dict[str, tuple[str, ...]]]
    """Names of probe_targets() in order, grouped (e.g. {"position": ("x", "y")}); a linear probe
    reports R^2 per name and per group."""
    default_behaviour: ClassVar[dict[str, Any]] = {}
    default_goal_kind: str
    """The goal kind of a reset whose options name none (set by the constructor)."""
    """Settings of behaviour_policy when a dataset config gives none."""

    def _reset_options(self, options: dict[str, Any] | None, valid: tuple[str, ...]) -> tuple[dict[str, Any], str]:
        """(options as a dict, the episode's goal kind: options["goal_kind"] or the default_goal_kind
        the family's constructor set), refusing keys not in `valid` and goal kinds the env does not offer."""
        options = dict(options or {})
        unknown = set(options) - set(valid)
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; valid: {', '.join(valid)}")
        goal_kind = options.get("goal_kind", self.default_goal_kind)
        if goal_kind not in self.goal_kinds:
            raise ValueError(f"unknown goal_kind {goal_kind!r}; choose one of {list(self.goal_kinds)}")
        return options, goal_kind

    def evaluate(self) -> dict[str, Any]:
        """Success and distances of the current state to the current goal:
        {"success": bool, "distance": float (the one the success rule thresholds), and any other
        named distances as floats}."""
        raise NotImplementedError

    def reached(self) -> bool:
        """Whether the success rule held after any control step since the last reset (the
        anchors' rule). Families update it inside their control-step loop; the start state itself
        does not count."""
        raise NotImplementedError

    def get_sim_state(self) -> np.ndarray:
        """float64 [S]: the full simulator state (set_sim_state(get_sim_state()) changes nothing)."""
        raise NotImplementedError

    def set_sim_state(self, state: np.ndarray) -> None:
        """Sets the full simulator state [S]; the goal is not changed."""
        raise NotImplementedError

    def render_sim_state(self, state: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3]: the scene at simulator state [S], without changing the simulation."""
        raise NotImplementedError

    def probe_targets(self) -> np.ndarray:
        """float32 [P]: what a linear probe should read off the representation now, in the order
        of probe_groups."""
        raise NotImplementedError

    def probe_reached(self, goal_kind: str, now: np.ndarray, goal: np.ndarray, scale: float) -> np.ndarray:
        """bool [B]: whether goal_kind's success rule holds between the states that probe targets
        now [B, P] and goal [B, P] describe (e.g. read off frames by a readout), with every tolerance
        times `scale`. A family whose rule its probe targets do not determine keeps this refusal."""
        raise ValueError(f"env {self.name} cannot judge its success rule from its probe targets, so nothing can "
                         f"hold at its goals; set configurator.{goal_kind}.hold_within=0")

    def episode_extras(self) -> dict[str, np.ndarray]:
        """Per-episode arrays a dataset stores beside the frames (e.g. a target position); {} if none."""
        return {}

    def behaviour_policy(self, rng: np.random.Generator, **settings: Any) -> BehaviourPolicy:
        """The policy that records offline video, drawing all its randomness from `rng`."""
        raise NotImplementedError

    def sample_episode(self, goal_kind: str, rng: np.random.Generator) -> EpisodeSpec:
        """One evaluation episode of `goal_kind`, drawing all its randomness from `rng` (it may
        step this env to find a start and a goal)."""
        raise NotImplementedError


def observation_space(image_size: int, proprio_size: int) -> spaces.Dict:
    """The observation space every GoalEnv has: pixels and goal uint8 [H, W, 3], proprio float32 [P]."""
    frame = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
    return spaces.Dict({"pixels": frame, "goal": frame, "proprio": spaces.Box(-np.inf, np.inf, (proprio_size,), np.float32)})


def probe_names(groups: dict[str, tuple[str, ...]]) -> list[str]:
    """The flat probe target names in order."""
    return [name for names in groups.values() for name in names]


def setting_type_problems(fn: Callable, settings: dict[str, Any]) -> list[str]:
    """One phrase per setting of `fn` (an env class, a planner) whose value is not of the type of
    its default, e.g. "image_size='big' is a str, not an int (default 64)": settings from the
    command line reach constructors untyped, and a constructor comparing a string with a number
    fails with a bare TypeError. A setting without a default, or with default None, is not
    checked; an int is taken where the default is a float, a list where it is a tuple, None where
    the annotation allows it."""
    parameters = inspect.signature(fn).parameters
    problems = []
    for key, value in settings.items():
        default = parameters[key].default if key in parameters else None
        if default is None or default is inspect.Parameter.empty:
            continue
        if value is None and "None" in str(parameters[key].annotation):  # e.g. `seed: int | None = 0`
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(default, bool):
            fits = isinstance(value, bool)
        elif isinstance(default, int):
            fits = number and isinstance(value, int)
        elif isinstance(default, float):
            fits = number
        elif isinstance(default, (list, tuple)):
            fits = isinstance(value, (list, tuple))
        else:
            fits = isinstance(value, type(default))
        if not fits:
            got, want = type(value).__name__, type(default).__name__
            problems.append(f"{key}={value!r} is {_a(got)} {got}, not {_a(want)} {want} (default {default!r})")
    return problems


def _a(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"
