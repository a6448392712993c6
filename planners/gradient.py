"""Gradient descent (Adam) on action sequences through the differentiable rollout."""

from __future__ import annotations

import torch
from torch import Tensor

from planners.base import CostFn, PlanResult, RolloutFn, SeededPlanner, check_bounds, check_cost, clamp

# atanh of +-1 is infinite: starts on a bound begin just inside it.
_EDGE = 0.999


class Gradient(SeededPlanner):
    """Adam on the action sequence, from several starts at once.

    Bounds hold by construction: actions = mid + half * tanh(u), and Adam moves u. The starts are
    the warm start (init) and `starts - 1` perturbations of it (std `init_std` of the half-range),
    all of the B problems' starts in one batched rollout per step. Only the actions get gradients
    (torch.autograd.grad), so a model's parameters are never touched. Every step's candidates are
    scored, and the best ever seen is returned, so the result is never worse than the warm start.
    Gradients are smooth and cheap but local: good at refining a pose, poor at detours.
    """

    def __init__(
        self,
        horizon: int = 5,
        starts: int = 8,
        steps: int = 20,
        lr: float = 0.1,
        init_std: float = 0.3,
        seed: int | None = 0,
    ):
        if horizon < 1 or starts < 1 or steps < 0:
            raise ValueError("horizon and starts must be >= 1 and steps >= 0")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.horizon = horizon
        self.starts = starts
        self.steps = steps
        self.lr = lr
        self.init_std = init_std
        self._init_seed(seed)

    def plan(self, rollout_fn: RolloutFn, cost_fn: CostFn, init: Tensor, low: Tensor, high: Tensor) -> PlanResult:
        """Args:
            rollout_fn: actions [B, N, H, A] -> representations [B, N, H, D], differentiable
            cost_fn: (representations [B, N, H, D], actions [B, N, H, A]) -> cost [B, N], differentiable
            init: the first start [B, H, A]
            low, high: action bounds [A]
        Returns:
            PlanResult(actions [B, H, A], cost [B], info with the best cost)
        """
        b, h, a = init.shape
        low, high = check_bounds(init, low, high)
        with torch.no_grad():
            noise = self._randn((b, self.starts, h, a), init) * self.init_std * (high - low) / 2
            noise[:, 0] = 0.0  # the warm start itself
            starts = clamp(init[:, None] + noise, low, high)  # [B, S, H, A]
        return self.descend(rollout_fn, cost_fn, starts, low, high)

    def descend(self, rollout_fn: RolloutFn, cost_fn: CostFn, starts: Tensor, low: Tensor, high: Tensor) -> PlanResult:
        """Adam from each of starts [B, S, H, A] (within low, high [A]); the best sequence seen."""
        b, s = starts.shape[:2]
        mid, half = (high + low) / 2, (high - low) / 2
        scaled = ((starts - mid) / half.clamp_min(1e-12)).clamp(-_EDGE, _EDGE)
        u = torch.atanh(scaled).detach().requires_grad_(True)  # [B, S, H, A]
        optimizer = torch.optim.Adam([u], lr=self.lr)
        best_actions = starts[:, 0].detach().clone()
        best_cost = torch.full((b,), float("inf"), device=starts.device, dtype=starts.dtype)
        with torch.enable_grad():  # the episode loop plans under no_grad
            for step in range(self.steps + 1):
                actions = mid + half * torch.tanh(u)  # [B, S, H, A]
                if step == 0:  # score the starts exactly (tanh(atanh(x)) is x only to rounding)
                    actions = actions + (starts - actions).detach()
                # both lines above can round just past a bound (low 1e-32: 0.5 - 0.5 = 0 < low);
                # torch.clamp, not planners.base.clamp: at a bound it passes the whole gradient, where
                # torch.minimum / maximum pass half, and starts often sit on a bound
                actions = torch.clamp(actions, low, high)
                cost = check_cost(cost_fn(rollout_fn(actions), actions), b, s)  # [B, S]
                with torch.no_grad():
                    lowest, idx = cost.min(dim=1)
                    improved = lowest < best_cost
                    best_cost = torch.where(improved, lowest, best_cost)
                    best_actions[improved] = actions[improved, idx[improved]]
                if step == self.steps:
                    break
                (u.grad,) = torch.autograd.grad(cost.sum(), [u])  # problems and starts are independent
                optimizer.step()
        return PlanResult(actions=best_actions, cost=best_cost.detach(), info={"best_cost": best_cost.mean().item()})
