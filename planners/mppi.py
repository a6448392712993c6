"""Model predictive path integral control (MPPI) over action sequences."""

from __future__ import annotations

import torch
from torch import Tensor

from planners.base import CostFn, PlanResult, RolloutFn, SeededPlanner, check_bounds, check_cost, clamp


class MPPI(SeededPlanner):
    """MPPI: sample around a Gaussian, move it to the exponentially weighted average of all samples.

    Unlike CEM, every candidate counts, with weight softmax(-cost / temperature). The costs are
    first standardised per problem (minus the population's minimum, over its std), so one
    temperature serves energies of any scale: at temperature 1 a candidate one std worse than the
    best weighs e^-1 of it. The std is refitted to the same weights, with a floor (`min_std`), so
    the search keeps exploring. The warm start (init, the previous plan shifted) is the first
    mean and stays a candidate; the best candidate seen, or the final mean if better, is returned.
    """

    def __init__(
        self,
        horizon: int = 5,
        samples: int = 150,
        iterations: int = 6,
        temperature: float = 0.5,
        init_std: float = 0.5,
        min_std: float = 0.05,
        seed: int | None = 0,
    ):
        if horizon < 1 or iterations < 1 or samples < 2:
            raise ValueError("horizon and iterations must be >= 1 and samples >= 2")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.horizon = horizon
        self.samples = samples
        self.iterations = iterations
        self.temperature = temperature
        self.init_std = init_std
        self.min_std = min_std
        self._init_seed(seed)

    @torch.no_grad()
    def plan(self, rollout_fn: RolloutFn, cost_fn: CostFn, init: Tensor, low: Tensor, high: Tensor) -> PlanResult:
        """Args:
            rollout_fn: actions [B, N, H, A] -> representations [B, N, H, D]
            cost_fn: (representations [B, N, H, D], actions [B, N, H, A]) -> cost [B, N]
            init: mean of the first sampling distribution [B, H, A]
            low, high: action bounds [A]
        Returns:
            PlanResult(actions [B, H, A], cost [B], info with the final std and best cost)
        """
        b, h, a = init.shape
        n = self.samples
        low, high = check_bounds(init, low, high)
        mean = clamp(init, low, high)  # [B, H, A]
        std = torch.full_like(mean, self.init_std) * (high - low) / 2
        best_actions, best_cost = mean.clone(), torch.full((b,), float("inf"), device=init.device, dtype=init.dtype)
        for _ in range(self.iterations):
            candidates = mean[:, None] + std[:, None] * self._randn((b, n, h, a), init)  # [B, N, H, A]
            candidates[:, 0] = mean
            candidates = clamp(candidates, low, high)
            cost = check_cost(cost_fn(rollout_fn(candidates), candidates), b, n)  # [B, N]
            lowest, idx = cost.min(dim=1)  # [B]
            improved = lowest < best_cost
            best_cost = torch.where(improved, lowest, best_cost)
            best_actions[improved] = candidates[improved, idx[improved]]
            spread = cost.std(dim=1, keepdim=True).clamp_min(1e-12)  # [B, 1]; equal costs weigh equally
            weights = torch.softmax(-(cost - lowest[:, None]) / (spread * self.temperature), dim=1)  # [B, N]
            w = weights[:, :, None, None]  # [B, N, 1, 1]
            mean = clamp((w * candidates).sum(dim=1), low, high)  # [B, H, A]; rounding may step past a bound
            std = (w * (candidates - mean[:, None]).square()).sum(dim=1).sqrt().clamp_min(self.min_std)
        final = check_cost(cost_fn(rollout_fn(mean[:, None]), mean[:, None]), b, 1)[:, 0]  # [B]
        improved = final < best_cost
        best_cost = torch.where(improved, final, best_cost)
        best_actions[improved] = mean[improved]
        info = {"final_std": std.mean().item(), "best_cost": best_cost.mean().item()}
        return PlanResult(actions=best_actions, cost=best_cost, info=info)
