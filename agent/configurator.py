"""The configurator: for a task (env, goal kind, step budget) it decides the cost and the planner
settings. It is the only place where those decisions are made; the evaluation builds the objects
from what it returns. Its settings per goal kind come from configs/configurator/<env>.yaml, which
agent.run picks from the env's name; the planner is the run's (`planner=<name>`,
configs/planner/<name>.yaml), with this goal kind's overrides for that planner on top."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from agent.goal_sources import source_class
from envs.base import GoalEnv, setting_type_problems
from planners.subgoal_search import SubgoalSearch
from world_model.plain import plain

WARM_STARTS = ("shifted", "prior", "hold")
"""TaskSettings.warm_start's and compare_starts' choices (agent/policies.py PlanningPolicy): the previous
plan shifted, the action prior's proposal, or the zero action throughout (an env whose zero action
stops the agent holds still)."""


@dataclass
class TaskSettings:
    """How to plan for one goal kind (all fields documented; budgets in control steps)."""

    budget: int | None = None
    """Control steps the episode may use (success is judged at the end); None = the goal kind's own."""
    horizon: int = 5
    """Decisions planned ahead (each `env.action_repeat` control steps), whichever the planner."""
    planner: dict[str, Any] = field(default_factory=dict)
    """Overrides of the planner's own settings (configs/planner/<name>.yaml) for this goal kind,
    per planner name, e.g. {"cem": {"samples": 300}}; a planner not named here runs as configured."""
    replan_every: int = 1
    """Decisions executed from each plan before planning again (1 = full MPC)."""
    shrink_horizon: bool = True
    """Clip the horizon at the end of the budget, so the last planned step is the judged one."""
    metric: str = "l2"
    """Goal energy: "l2" (mean squared) or "l1"."""
    goal_weight: float = 1.0
    """Weight of the goal energy."""
    last_weight: float = 1.0
    """Goal-energy weight of the last planned step."""
    step_weight: float = 0.1
    """Goal-energy weight of every earlier planned step (rewards arriving early and staying)."""
    critic_weight: float = 0.0
    """Weight of the reach critic's distance to the goal (agent/critic.py); 0 = no critic."""
    critic_reduce: str = "last"
    """Which planned step the critic scores: "last", or "min" (the closest approach along the plan)."""
    subgoal_critic_weight: float = 0.0
    """Weight of the reach critic's distance to the subgoal in the low level's cost, when a
    hierarchical planner or the landmark graph hands one down (a hierarchical planner's high
    level scores critic_weight toward its own goal)."""
    goal_source: str = "final"
    """Which latent the planner aims at (agent/goal_sources.py): "final" (the goal image) or "graph"
    (the frame subgoal_ahead decisions along the shortest path through a graph of the training
    video's frames, agent/landmarks.py and configs/landmarks, looked up again before every plan),
    or a goal-source class's dotted path. A hierarchical planner's high level plans toward what
    this source answers and hands its low level the subgoal of its own plan."""
    subgoal_ahead: float = 2.0
    """Decisions along the graph's shortest path to the subgoal handed to a flat planner (a
    hierarchical planner's high level aims as far as its macro plan reaches instead)."""
    energy_scales: list[int] = field(default_factory=lambda: [1])
    """Token-grid poolings the goal energy sums over (spatial representations only): [1, 2] adds
    a 2x2-pooled copy, which keeps the energy informative when the arm is far from the goal."""
    disagreement_weight: float = 0.0
    """Weight of the model disagreement (agent/costs.py ModelDisagreement): the predictor ensemble's
    (configs/ensemble) mean squared distance from the world model's rollout of a plan, averaged
    over its steps, so plans the model is unsure of cost more; 0 = no ensemble is fitted."""
    readout_weight: float = 0.0
    """Weight of the probe readout's distance to the goal (agent/costs.py ReadoutDistance): the env's
    probe targets (e.g. positions, an angle) read off the predicted and the goal representations by
    an MLP fitted on the training video (configs/readout), compared in standardised units; 0 = no
    readout is fitted."""
    readout_groups: dict[str, float] = field(default_factory=dict)
    """Weights of the env's probe groups (envs/<family> probe_groups, e.g. {"block": 3.0}) in the
    readout distance; a group not named weighs 1. Lets the cost weigh the parts of the scene as the
    success rule does, e.g. the block that must not be knocked away against the agent."""
    warm_start: str = "shifted"
    """The planner's first guess at every decision: "shifted" (the previous plan shifted by the executed
    decision, zeros after it) or "prior" (the action prior's proposal toward the goal the goal source
    answers: agent/prior.py, fitted on the training video) or "hold" (the zero action throughout)."""
    compare_starts: list[str] = field(default_factory=list)
    """Other first guesses (WARM_STARTS' names) rolled out and scored under the cost beside warm_start's
    before every search; the search starts from the cheapest. Costs one rollout per guess; [] = none."""
    hold_within: float = 0.0
    """Above 0: at every decision where the probe readout (configs/readout), read off the current frame
    and the goal image, finds the env's success rule met with every tolerance times this, the episode
    holds still (the zero action) instead of acting on its plan, so a goal reached is kept rather than
    pushed through (envs/base.py probe_reached); 0 = never."""
    action_scale: float = 1.0
    """The executed command is the plan's first action times this (in (0, 1]; the next decision's
    history carries the command as executed). A cautious command: where the model's one-decision
    predictions are uncertain near the goal (benchmarks/model_gain.py measures how they match the
    true moves, both ways), full commands ring around it instead of settling; scaled, the agent
    settles more often, at the cost of a slower approach. 1 = as planned."""
    prior_weight: float = 0.0
    """With warm_start "prior": weight of the mean squared distance of a plan's actions from the prior's
    proposal, so the search leaves the motions the video shows only for a clearly lower cost; 0 = none."""
    action_magnitude: float = 0.0
    """Weight of the mean squared action."""
    action_smoothness: float = 0.0
    """Weight of the mean squared change between consecutive actions."""


@dataclass
class PlanSetup:
    """What the configurator decided for one task."""

    budget: int
    decisions: int
    horizon: int
    planner_overrides: dict
    replan_every: int
    shrink_horizon: bool
    cost_weights: dict
    goal_energy: dict
    goal_source: str = "final"
    subgoal_ahead: float = 2.0
    warm_start: str = "shifted"
    compare_starts: tuple[str, ...] = ()
    hold_within: float = 0.0
    action_scale: float = 1.0

    def horizon_at(self, decision: int) -> int:
        """Planning horizon at decision index `decision` (0-based)."""
        return min(self.horizon, self.decisions - decision) if self.shrink_horizon else self.horizon


class Configurator:
    """settings: goal kind -> TaskSettings, for the env `env` (envs/base.py), which must offer
    exactly those goal kinds."""

    @classmethod
    def of_run(cls, settings, env) -> Configurator:
        """The configurator of a run's `configurator` settings (goal kind -> TaskSettings' fields, a dict
        or a config node) for `env`."""
        return cls({k: TaskSettings(**v) for k, v in plain(settings).items()}, env)

    def __init__(self, settings: dict[str, TaskSettings], env):
        offered, given = list(env.goal_kinds), list(settings)
        if sorted(offered) != sorted(given):
            raise ValueError(
                f"configs/configurator/{env.name}.yaml sets goal kinds {given} but env {env.name} offers {offered}; "
                "give exactly one entry per goal kind"
            )
        self.settings, self.env = settings, env

    def setup(self, goal_kind: str, planner: str | None = None, budget: int | None = None) -> PlanSetup:
        """Settings for goal_kind in this env, planned with the planner named `planner`;
        `budget` (control steps) overrides the configured one."""
        if goal_kind not in self.settings:
            raise ValueError(f"unknown goal kind {goal_kind!r} for env {self.env.name}; choose from {list(self.settings)}")
        s = self.settings[goal_kind]
        action_repeat = self.env.action_repeat
        budget = budget or s.budget or self.env.goal_kinds[goal_kind].budget
        try:
            source_class(s.goal_source)
        except ValueError as e:
            raise ValueError(f"configurator.{goal_kind}.{e}") from None
        if s.warm_start not in WARM_STARTS:
            raise ValueError(f"configurator.{goal_kind}.warm_start={s.warm_start!r}; choose one of {list(WARM_STARTS)}")
        unknown_starts = [w for w in s.compare_starts if w not in WARM_STARTS]
        if unknown_starts:
            raise ValueError(f"configurator.{goal_kind}.compare_starts names {unknown_starts}; choose from {list(WARM_STARTS)}")
        if s.prior_weight < 0 or (s.prior_weight and s.warm_start != "prior"):
            raise ValueError(f"configurator.{goal_kind}.prior_weight={s.prior_weight} weighs the distance from the action "
                             "prior's proposal: it must be 0 or more, and above 0 only with warm_start=prior")
        if s.hold_within < 0:
            raise ValueError(f"configurator.{goal_kind}.hold_within={s.hold_within} scales the success rule's tolerances: "
                             "it must be 0 (never hold) or more")
        if s.hold_within and getattr(type(self.env), "probe_reached", None) in (None, GoalEnv.probe_reached):
            raise ValueError(f"configurator.{goal_kind}.hold_within={s.hold_within}, but env {self.env.name} cannot judge its "
                             "success rule from its probe targets (envs/base.py probe_reached); set it to 0")
        if not 0 < s.action_scale <= 1:
            raise ValueError(f"configurator.{goal_kind}.action_scale={s.action_scale} scales the executed command: "
                             "it must be above 0 and at most 1 (1 = as planned)")
        if s.subgoal_ahead <= 0:
            raise ValueError(f"configurator.{goal_kind}.subgoal_ahead={s.subgoal_ahead}: it must be above 0 decisions")
        groups = self.env.probe_groups if s.readout_groups else {}
        unknown = set(s.readout_groups) - set(groups)
        if unknown:
            raise ValueError(f"configurator.{goal_kind}.readout_groups names {sorted(unknown)}, which env {self.env.name} "
                             f"does not read; its probe groups are {list(self.env.probe_groups)}")
        if any(w < 0 for w in s.readout_groups.values()):
            raise ValueError(f"configurator.{goal_kind}.readout_groups={s.readout_groups}: weights must be 0 or more")
        if budget % action_repeat:
            raise ValueError(f"budget {budget} control steps is not a multiple of env.action_repeat={action_repeat}")
        return PlanSetup(
            budget=budget,
            decisions=budget // action_repeat,
            horizon=s.horizon,
            planner_overrides=dict(s.planner.get(planner, {})) if planner else {},
            replan_every=s.replan_every,
            shrink_horizon=s.shrink_horizon,
            cost_weights={"goal": s.goal_weight, "critic": s.critic_weight, "critic_reduce": s.critic_reduce,
                          "subgoal_critic": s.subgoal_critic_weight, "disagreement": s.disagreement_weight,
                          "readout": s.readout_weight,
                          "readout_targets": [s.readout_groups.get(group, 1.0) for group, names in groups.items()
                                              for _ in names] or None,  # [K] in probe_targets' order
                          "action_magnitude": s.action_magnitude, "prior": s.prior_weight,
                          "action_smoothness": s.action_smoothness},
            goal_energy={"metric": s.metric, "last_weight": s.last_weight, "step_weight": s.step_weight,
                         "scales": tuple(s.energy_scales)},
            goal_source=s.goal_source,
            subgoal_ahead=s.subgoal_ahead,
            warm_start=s.warm_start,
            compare_starts=tuple(w for w in s.compare_starts if w != s.warm_start),
            hold_within=s.hold_within,
            action_scale=s.action_scale,
        )


def _numbers(settings: dict, prefix: str = ""):
    """(dotted key, float) of every float among `settings` and its nested settings."""
    for key, value in settings.items():
        if isinstance(value, dict):
            yield from _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, float):
            yield f"{prefix}{key}", value


def build_planner(planner_cfg: dict, setup: PlanSetup, **settings):
    """The planner of planner_cfg (configs/planner/<name>.yaml: name, _target_ and its settings)
    with the setup's horizon and overrides, then `settings` (e.g. the seed of one chunk of
    episodes); a setting the planner does not take is one clear error. A hierarchical config's
    `subgoal_search` block is its high level (build_subgoal_search), not a setting of this planner."""
    cfg = {k: v for k, v in planner_cfg.items() if k != "subgoal_search"}
    overrides = {k: v for k, v in setup.planner_overrides.items() if k != "subgoal_search"}
    return make_planner(cfg, {"horizon": setup.horizon, **overrides, **settings})


def build_subgoal_search(planner_cfg: dict, setup: PlanSetup, seed: int | None):
    """The high level of a hierarchical planner config (planners/subgoal_search.py), from its
    `subgoal_search` block with this goal kind's overrides of it merged in, its search planner
    (the block's `planner`) drawing from `seed`; None for a flat planner."""
    if "subgoal_search" not in planner_cfg:
        return None
    name = planner_cfg.get("name", planner_cfg.get("_target_"))
    block = OmegaConf.to_container(OmegaConf.merge(planner_cfg["subgoal_search"],
                                                   setup.planner_overrides.get("subgoal_search", {})))
    if "planner" not in block:
        raise ValueError(f"planner {name}: subgoal_search needs a `planner` (the high level's search, with its _target_)")
    high = make_planner({"name": f"{name} subgoal_search.planner", **block.pop("planner")}, {"seed": seed})
    taken = inspect.signature(SubgoalSearch).parameters
    unknown = sorted(set(block) - set(taken))
    if unknown:
        raise ValueError(f"planner {name}: subgoal_search takes no setting {', '.join(unknown)}; it takes "
                         f"{', '.join(k for k in taken if k != 'planner')}")
    return SubgoalSearch(high, **block)


def make_planner(planner_cfg: dict, kwargs: dict):
    """planner_cfg (name, _target_, settings) instantiated with `kwargs` on top, every setting checked first."""
    cfg = dict(planner_cfg)
    name = cfg.pop("name", cfg.get("_target_"))
    taken = inspect.signature(get_class(cfg["_target_"])).parameters
    unknown = sorted((set(cfg) - {"_target_"} | set(kwargs)) - set(taken))
    if unknown:
        raise ValueError(f"planner {name} takes no setting {', '.join(unknown)}; it takes {', '.join(taken)} "
                         "(check the configurator's planner overrides and the planner=... overrides)")
    wrong = setting_type_problems(get_class(cfg["_target_"]), {**{k: v for k, v in cfg.items() if k != "_target_"},
                                                               **kwargs})
    if wrong:
        raise ValueError(f"planner {name}: {'; '.join(wrong)}")
    for key, value in _numbers({**cfg, **kwargs}):
        if not math.isfinite(value):  # NaN or inf would surface only as NaN actions, far from the setting
            raise ValueError(f"planner {name}: {key}={value} is not a finite number")
    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as e:  # hydra's message wraps the planner's own in two lines of context
        raise ValueError(f"planner {name}: {e.__cause__ or e}") from e
