"""Cross-entropy method over action sequences."""

from __future__ import annotations

import torch
from torch import Tensor

from planners.base import CostFn, PlanResult, RolloutFn


class CEM:
    """Cross-entropy method: sample around a Gaussian, refit it to the elites, repeat.

    Knows nothing of models or environments: it calls `rollout_fn` and `cost_fn` once per
    iteration on all candidates of all B problems together (one batched forward pass).
    The current mean is always one of the candidates, so the result never gets worse than the
    warm start, and the best candidate seen in any iteration is returned.
    """

    def __init__(
        self,
        horizon: int = 5,
        samples: int = 300,
        iterations: int = 30,
        elites: int = 30,
        init_std: float = 0.5,
        min_std: float = 0.05,
        seed: int | None = 0,
    ):
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
        self.seed = seed
        self._generators: dict = {}

    def _generator(self, device: torch.device) -> torch.Generator | None:
        # One generator per device, seeded once: a run's plans are reproducible, yet successive
        # calls draw fresh noise.
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    @torch.no_grad()
    def plan(self, rollout_fn: RolloutFn, cost_fn: CostFn, init: Tensor, low: Tensor, high: Tensor) -> PlanResult:
        """Args:
            rollout_fn: actions [B, N, H, A] -> representations [B, N, H, D]
            cost_fn: (representations [B, N, H, D], actions [B, N, H, A]) -> cost [B, N]
            init: mean of the first sampling distribution [B, H, A]
            low, high: action bounds [A], on init's device
        Returns:
            PlanResult(actions [B, H, A], cost [B], info with the final mean cost and std)
        """
        b, h, a = init.shape
        n, device = self.samples, init.device
        low, high = low.to(init), high.to(init)
        mean = torch.maximum(torch.minimum(init, high), low)  # [B, H, A]
        std = torch.full_like(mean, self.init_std) * (high - low) / 2
        best_actions, best_cost = mean.clone(), torch.full((b,), float("inf"), device=device)
        generator = self._generator(device)
        for _ in range(self.iterations):
            noise = torch.randn((b, n, h, a), device=device, dtype=init.dtype, generator=generator)
            candidates = mean[:, None] + std[:, None] * noise  # [B, N, H, A]
            candidates[:, 0] = mean  # keep the current mean in the population
            candidates = torch.maximum(torch.minimum(candidates, high), low)
            cost = cost_fn(rollout_fn(candidates), candidates)  # [B, N]
            if cost.shape != (b, n):
                raise ValueError(f"cost_fn must return [B, N] = {(b, n)}, got {tuple(cost.shape)}")
            elite_cost, idx = cost.topk(self.elites, dim=1, largest=False)  # [B, E]
            elites = candidates.gather(1, idx[:, :, None, None].expand(-1, -1, h, a))  # [B, E, H, A]
            improved = elite_cost[:, 0] < best_cost
            best_cost = torch.where(improved, elite_cost[:, 0], best_cost)
            best_actions[improved] = elites[improved, 0]
            mean = elites.mean(dim=1)
            std = elites.std(dim=1, unbiased=False).clamp_min(self.min_std)
        info = {"final_std": std.mean().item(), "best_cost": best_cost.mean().item()}
        return PlanResult(actions=best_actions, cost=best_cost, info=info)
