"""Goal sources: which latent the planner aims at, decision by decision.

A goal kind's source is named in its configurator settings (`configurator.<goal kind>.goal_source`:
a name below, or the dotted path of a class of your own). The policy asks it, before every plan,
`goal(z_now, decision)` and scores the plans toward the answer; the source says which fitted
modules it needs (`needs`), so the composition root fits or loads only those, and whether it aims
at a subgoal rather than the final goal (`subgoal`: the low level's critic term then uses
`subgoal_critic_weight`). A new source is one class with this shape, one config entry, its tests:

    class MySource:
        needs = ()            # fitted modules among MODULES, handed to __init__ by name
        subgoal = False
        def __init__(self, setup, **modules): ...
        def reset(self, z_goal): ...            # z_goal [B, D]: the encoded goal images
        def goal(self, z_now, decision): ...    # z_now [B, D] -> the latent to aim at [B, D]

A hierarchical planner (a planner config with `subgoal_search`, configs/planner/hierarchical.yaml)
wraps the goal kind's source in `MacroSubgoal`: its high level searches macro-actions with the
level-2 predictor toward what the wrapped source answers, and hands the low level a subgoal.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import ClassVar, Protocol

import torch
from torch import Tensor

from agent.costs import aim

MODULES = ("landmarks", "macro")  # fitted modules a source may need (agent/run.py fits each once)


class GoalSource(Protocol):
    needs: ClassVar[tuple[str, ...]]
    subgoal: ClassVar[bool]

    def reset(self, z_goal: Tensor) -> None:
        """z_goal [B, D]: the encoded goal images of B new episodes."""
        ...

    def goal(self, z_now: Tensor, decision: int) -> Tensor:
        """z_now [B, D], the 0-based decision index -> the latent [B, D] the planner aims at now."""
        ...


class FinalGoal:
    """The goal image itself, every decision."""

    needs: ClassVar[tuple[str, ...]] = ()
    subgoal: ClassVar[bool] = False

    def __init__(self, setup):
        self.z_goal: Tensor | None = None

    def reset(self, z_goal: Tensor) -> None:
        self.z_goal = z_goal

    def goal(self, z_now: Tensor, decision: int) -> Tensor:
        return self.z_goal


class GraphSubgoal:
    """The frame `setup.subgoal_ahead` decisions along the shortest path through the graph of the
    training video's frames (agent/landmarks.py) from the current latent to the goal's; the goal
    image itself where the goal is that near or the graph knows no path."""

    needs: ClassVar[tuple[str, ...]] = ("landmarks",)
    subgoal: ClassVar[bool] = True

    def __init__(self, setup, landmarks):
        self.landmarks, self.ahead = landmarks, setup.subgoal_ahead
        self.z_goal: Tensor | None = None

    def reset(self, z_goal: Tensor) -> None:
        self.z_goal = z_goal
        self.landmarks.set_goals(z_goal)

    def goal(self, z_now: Tensor, decision: int) -> Tensor:
        sub, arrived, _ = self.landmarks.subgoals(z_now, self.ahead)  # [B, D], [B]
        return torch.where(torch.as_tensor(arrived, device=z_now.device)[:, None], self.z_goal, sub)


class MacroSubgoal:
    """The hierarchical planner's high level: `search` (planners/subgoal_search.py) plans
    macro-actions of k decisions each with the level-2 predictor `macro` (world_model/macro.py),
    scored by `cost` toward what `inner` answers (the final goal, or the graph's frame as far along
    as the macro plan reaches), and hands down the first macro step's predicted latent; `inner`'s
    own answer where the plan arrives within that step or the budget ends within one. `low`,
    `high` [A]: the primitive action bounds."""

    needs: ClassVar[tuple[str, ...]] = ("macro",)
    subgoal: ClassVar[bool] = True

    def __init__(self, setup, macro, inner: GoalSource, search, cost, low: Tensor, high: Tensor):
        self.macro, self.inner, self.search, self.cost = macro, inner, search, cost
        self.decisions, self.low, self.high = setup.decisions, low, high

    def reset(self, z_goal: Tensor) -> None:
        self.inner.reset(z_goal)
        self.search.reset()

    def goal(self, z_now: Tensor, decision: int) -> Tensor:
        goal = self.inner.goal(z_now, decision)  # [B, D], the high level's goal
        left = self.decisions - decision
        if left <= self.macro.k:
            return goal
        b = z_now.shape[0]

        def high_rollout_fn(macro: Tensor) -> Tensor:
            """macro-actions [B, N, Hh, k*A] -> z [B, N, Hh, D]"""
            n, hh = macro.shape[1], macro.shape[2]
            start = z_now[:, None].expand(-1, n, -1).reshape(b * n, -1)  # [B*N, D]
            return self.macro.rollout(start, macro.reshape(b * n, hh, -1)).reshape(b, n, hh, -1)

        subgoal, arrived = self.search.subgoal(high_rollout_fn, aim(self.cost, goal), b, self.low, self.high,
                                               self.macro.k, left)
        return torch.where(arrived[:, None], goal, subgoal)


SOURCES: dict[str, type] = {"final": FinalGoal, "graph": GraphSubgoal}


def source_class(name: str) -> type:
    """The class `configurator.<goal kind>.goal_source` names: a key of SOURCES or a dotted path."""
    if name in SOURCES:
        return SOURCES[name]
    if "." not in name:
        raise ValueError(f"goal_source={name!r}: choose from {sorted(SOURCES)} or give a class's dotted path")
    module, _, attr = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"goal_source={name!r} cannot be imported ({e}); give a class's dotted path") from None
    missing = [a for a in ("needs", "subgoal", "reset", "goal") if a not in dir(cls)]
    if missing:
        raise ValueError(f"goal_source={name!r} is not a goal source: it lacks {', '.join(missing)} "
                         "(agent/goal_sources.py says what one has)")
    unknown = sorted(set(cls.needs) - set(MODULES))
    if unknown:
        raise ValueError(f"goal_source={name!r} needs {unknown}; a source may need {list(MODULES)}")
    return cls


def is_hierarchical(planner_cfg) -> bool:
    """Whether the planner config hands its low level subgoals from a high-level search
    (it has a `subgoal_search` block: configs/planner/hierarchical.yaml)."""
    return "subgoal_search" in planner_cfg


def needs(setup, planner_cfg) -> set[str]:
    """The fitted modules (among MODULES, "critic", "ensemble", "readout" and "prior") a goal kind's plans
    need: what its source declares, the level-2 predictor for a hierarchical planner, the critic when a
    cost that applies gives it a weight, the predictor ensemble when the disagreement has a weight,
    the probe readout when its distance has a weight or the goal kind holds at a goal it reads as reached,
    and the action prior when the planner starts from it."""
    cls = source_class(setup.goal_source)
    out = set(cls.needs)
    hierarchical = is_hierarchical(planner_cfg)
    if hierarchical:
        out |= set(MacroSubgoal.needs)
    low_critic = setup.cost_weights["subgoal_critic" if (cls.subgoal or hierarchical) else "critic"]
    if low_critic or (hierarchical and setup.cost_weights["critic"]):
        out.add("critic")
    if setup.cost_weights["disagreement"]:
        out.add("ensemble")
    if setup.cost_weights.get("readout") or setup.hold_within:
        out.add("readout")
    if "prior" in (setup.warm_start, *setup.compare_starts):
        out.add("prior")
    return out


def build_source(setup, modules: dict, search=None, high_cost=None, low: Tensor | None = None,
                 high: Tensor | None = None) -> GoalSource:
    """The goal kind's source from its setup, handed the fitted `modules` it declares; with a
    subgoal `search` (a hierarchical planner), wrapped in MacroSubgoal, whose `high_cost` scores
    the macro plans; the wrapped source sees `subgoal_ahead` as far as a macro plan reaches (a
    graph subgoal is then the high level's goal)."""
    cls = source_class(setup.goal_source)
    missing = [m for m in cls.needs if modules.get(m) is None]
    if missing:
        raise ValueError(f"goal source {setup.goal_source!r} needs {', '.join(missing)}; pass it to the evaluation")
    given = {m: modules[m] for m in cls.needs}
    if search is None:
        return cls(setup, **given)
    if modules.get("macro") is None:
        raise ValueError("a hierarchical planner plans with the level-2 predictor; pass macro= to the evaluation")
    reach = search.high_horizon * modules["macro"].k  # decisions a macro plan reaches
    inner = cls(dataclasses.replace(setup, subgoal_ahead=reach), **given)
    return MacroSubgoal(setup, modules["macro"], inner, search, high_cost, low, high)
