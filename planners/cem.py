"""Cross-entropy method over action sequences."""

from __future__ import annotations

import torch
from torch import Tensor

from planners.base import CostFn, PlanResult, RolloutFn, SeededPlanner, check_bounds, check_cost, clamp


class CEM(SeededPlanner):
    """Cross-entropy method: sample around a Gaussian, refit it to the elites, repeat.

    Calls `rollout_fn` and `cost_fn` once per iteration on all candidates of all B problems
    together (one batched forward pass). The current mean is always one of the candidates, so the
    result never gets worse than the warm start, and the best candidate seen in any iteration is
    returned.
    """

    def __init__(
        self,
        horizon: int = 5,
        samples: int = 50,
        iterations: int = 4,
        elites: int = 8,
        init_std: float = 0.5,
        min_std: float = 0.05,
        seed: int | None = 0,
    ):
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}")
        if not 1 <= elites <= samples:
            raise ValueError(f"elites must be in [1, samples={samples}], got {elites}")
        if horizon < 1 or iterations < 1:
            raise ValueError("horizon and iterations must be >= 1")
        self.horizon = horizon
        self.samples = samples
        self.iterations = iterations
        self.elites = elites
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
        best_actions, best_cost, _, std = self.search(rollout_fn, cost_fn, init, low, high)
        info = {"final_std": std.mean().item(), "best_cost": best_cost.mean().item()}
        return PlanResult(actions=best_actions, cost=best_cost, info=info)

    @torch.no_grad()
    def search(self, rollout_fn: RolloutFn, cost_fn: CostFn, init: Tensor, low: Tensor, high: Tensor):
        """The CEM loop. Returns (best actions [B, H, A], best cost [B], last elites [B, E, H, A]
        sorted best first, final std [B, H, A])."""
        b, h, a = init.shape
        n = self.samples
        low, high = check_bounds(init, low, high)
        mean = clamp(init, low, high)  # [B, H, A]
        std = torch.full_like(mean, self.init_std) * (high - low) / 2
        best_actions, best_cost = mean.clone(), torch.full((b,), float("inf"), device=init.device, dtype=init.dtype)
        for _ in range(self.iterations):
            candidates = mean[:, None] + std[:, None] * self._randn((b, n, h, a), init)  # [B, N, H, A]
            candidates[:, 0] = mean  # keep the current mean in the population
            candidates = clamp(candidates, low, high)
            cost = check_cost(cost_fn(rollout_fn(candidates), candidates), b, n)  # [B, N]
            elite_cost, idx = cost.topk(self.elites, dim=1, largest=False)  # [B, E], best first
            elites = candidates.gather(1, idx[:, :, None, None].expand(-1, -1, h, a))  # [B, E, H, A]
            improved = elite_cost[:, 0] < best_cost
            best_cost = torch.where(improved, elite_cost[:, 0], best_cost)
            best_actions[improved] = elites[improved, 0]
            mean = elites.mean(dim=1)
            std = elites.std(dim=1, unbiased=False).clamp_min(self.min_std)
        return best_actions, best_cost, elites, std
