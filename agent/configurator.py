"""The configurator: for a task (env, goal kind, step budget) it decides the cost and the planner
settings. It is the only place where those decisions are made; run.py builds the objects from
what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TaskSettings:
    """How to plan for one goal kind (all fields documented; budgets in control steps)."""

    budget: int = 50
    """Control steps the episode may use; success is judged at the end."""
    horizon: int = 5
    """Decisions planned ahead (each `env.action_repeat` control steps)."""
    samples: int = 150
    """Candidate action sequences per CEM iteration."""
    iterations: int = 6
    """CEM iterations per decision."""
    elites: int = 15
    """Candidates the sampling distribution is refitted to."""
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
    energy_scales: list[int] = field(default_factory=lambda: [1])
    """Token-grid poolings the goal energy sums over (spatial representations only): [1, 2] adds
    a 2x2-pooled copy, which keeps the energy informative when the arm is far from the goal."""
    action_magnitude: float = 0.0
    """Weight of the mean squared action."""
    action_smoothness: float = 0.0
    """Weight of the mean squared change between consecutive actions."""


@dataclass
class ConfiguratorConfig:
    """Per-env planning settings, one entry per goal kind."""

    state: TaskSettings = field(default_factory=TaskSettings)
    """Joint-pose goals (protocol a)."""
    task: TaskSettings = field(default_factory=lambda: TaskSettings(budget=100))
    """dm_control target goals (protocol b)."""


@dataclass
class PlanSetup:
    """What the configurator decided for one task."""

    budget: int
    decisions: int
    planner_overrides: dict
    replan_every: int
    shrink_horizon: bool
    cost_weights: dict
    goal_energy: dict

    def horizon_at(self, decision: int) -> int:
        """Planning horizon at decision index `decision` (0-based)."""
        horizon = self.planner_overrides["horizon"]
        return min(horizon, self.decisions - decision) if self.shrink_horizon else horizon


class Configurator:
    def __init__(self, cfg: ConfiguratorConfig):
        self.cfg = cfg

    def setup(self, goal_kind: str, action_repeat: int, budget: int | None = None) -> PlanSetup:
        """Settings for goal_kind ("state" or "task") in an env with this action repeat;
        `budget` (control steps) overrides the configured one."""
        if goal_kind not in ("state", "task"):
            raise ValueError(f"unknown goal kind {goal_kind!r}; choose state or task")
        s: TaskSettings = getattr(self.cfg, goal_kind)
        budget = s.budget if budget is None else budget
        if budget % action_repeat:
            raise ValueError(f"budget {budget} control steps is not a multiple of env.action_repeat={action_repeat}")
        return PlanSetup(
            budget=budget,
            decisions=budget // action_repeat,
            planner_overrides={"horizon": s.horizon, "samples": s.samples, "iterations": s.iterations, "elites": s.elites},
            replan_every=s.replan_every,
            shrink_horizon=s.shrink_horizon,
            cost_weights={"goal": s.goal_weight, "critic": s.critic_weight, "action_magnitude": s.action_magnitude,
                          "action_smoothness": s.action_smoothness},
            goal_energy={"metric": s.metric, "last_weight": s.last_weight, "step_weight": s.step_weight,
                         "scales": tuple(s.energy_scales)},
        )
