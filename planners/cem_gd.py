"""CEM followed by gradient refinement of its elites (a hybrid of sampling and descent)."""

from __future__ import annotations

import torch
from torch import Tensor

from planners.base import CostFn, PlanResult, RolloutFn, check_bounds
from planners.cem import CEM
from planners.gradient import Gradient


class CEMGD(CEM):
    """CEM finds the basin (global, sample-based), then Adam polishes its `refine` best elites
    (local, precise): what sampling alone does poorly is the last few millimetres of a pose.

    The refined sequences replace CEM's answer only where they cost less, so the result is never
    worse than CEM's.
    """

    def __init__(
        self,
        horizon: int = 5,
        samples: int = 150,
        iterations: int = 6,
        elites: int = 15,
        init_std: float = 0.5,
        min_std: float = 0.05,
        refine: int = 4,
        gd_steps: int = 10,
        gd_lr: float = 0.05,
        seed: int | None = 0,
    ):
        super().__init__(horizon, samples, iterations, elites, init_std, min_std, seed)
        if not 1 <= refine <= elites:
            raise ValueError(f"refine must be in [1, elites={elites}], got {refine}")
        self.refine = refine
        self.gradient = Gradient(horizon, starts=refine, steps=gd_steps, lr=gd_lr, seed=None)

    def plan(self, rollout_fn: RolloutFn, cost_fn: CostFn, init: Tensor, low: Tensor, high: Tensor) -> PlanResult:
        """Args:
            rollout_fn: actions [B, N, H, A] -> representations [B, N, H, D], differentiable
            cost_fn: (representations [B, N, H, D], actions [B, N, H, A]) -> cost [B, N], differentiable
            init: mean of CEM's first sampling distribution [B, H, A]
            low, high: action bounds [A]
        Returns:
            PlanResult(actions [B, H, A], cost [B], info with CEM's and the refined best cost)
        """
        best_actions, best_cost, elites, std = self.search(rollout_fn, cost_fn, init, low, high)
        low, high = check_bounds(init, low, high)
        refined = self.gradient.descend(rollout_fn, cost_fn, elites[:, : self.refine], low, high)
        better = refined.cost < best_cost  # [B]
        actions = torch.where(better[:, None, None], refined.actions, best_actions)
        cost = torch.where(better, refined.cost, best_cost)
        info = {"final_std": std.mean().item(), "cem_cost": best_cost.mean().item(), "best_cost": cost.mean().item()}
        return PlanResult(actions=actions, cost=cost, info=info)
