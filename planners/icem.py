"""Improved cross-entropy method (iCEM, Pinneri et al. 2020) over action sequences."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from planners.base import CostFn, PlanResult, RolloutFn, SeededPlanner, check_bounds, check_cost, clamp


def colored_noise(shape: tuple[int, ...], beta: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Gaussian noise of `shape` [..., T] whose power falls as 1/f^beta along the last axis T,
    with unit variance at every step: beta 0 is white, 2 is red (smooth, slowly drifting).

    Built in the frequency domain: rfft bins get random amplitudes scaled by f^(-beta/2) (the
    zero-frequency bin takes the lowest non-zero frequency, 1/T), then irfft back to time.
    """
    t = shape[-1]
    freqs = torch.fft.rfftfreq(t, device=like.device).to(like.dtype)  # [F], F = T // 2 + 1
    freqs[0] = 1.0 / t
    scale = freqs ** (-beta / 2)  # [F]
    real = torch.randn((*shape[:-1], freqs.shape[0]), device=like.device, dtype=like.dtype, generator=generator)
    imag = torch.randn(real.shape, device=like.device, dtype=like.dtype, generator=generator)
    # A real white sequence has a real DC bin (and a real Nyquist bin when T is even) of variance T and
    # complex bins in between whose two parts have variance T / 2 each: match that, so beta 0 is white.
    nyquist = t % 2 == 0
    part = torch.full_like(scale, 1 / math.sqrt(2))
    part[0] = 1.0
    imag[..., 0] = 0.0
    if nyquist:
        part[-1] = 1.0
        imag[..., -1] = 0.0
    spectrum = torch.complex(real * scale * part, imag * scale * part)
    noise = torch.fft.irfft(spectrum, n=t, dim=-1)  # [..., T]
    # var of each step: (s_0^2 + 2 sum_middle s_k^2 + s_nyquist^2) / T^2
    weights = torch.full_like(scale, 2.0)
    weights[0] = 1.0
    if nyquist:
        weights[-1] = 1.0
    variance = (weights * scale.square()).sum() / t**2
    return noise / variance.sqrt()


class ICEM(SeededPlanner):
    """iCEM: CEM with temporally correlated noise, a shrinking population and memory of elites.

    - noise is coloured along time (`beta`; 0 = white as in CEM), so candidates are smooth;
    - the population shrinks by `decay` each iteration (never below 2 * elites);
    - a `keep_fraction` of the elites joins the next iteration's population, and all of the last
      elites, shifted by one step, join the next call's first population (the next decision);
      `reset()` forgets them when new episodes start;
    - the mean and std move smoothly (`momentum` of the old values kept);
    - the best candidate seen is executed (the mean is a candidate in every iteration).
    """

    def __init__(
        self,
        horizon: int = 5,
        samples: int = 150,
        iterations: int = 6,
        elites: int = 15,
        beta: float = 2.0,
        decay: float = 1.25,
        keep_fraction: float = 0.3,
        momentum: float = 0.1,
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
        if decay < 1 or not 0 <= keep_fraction <= 1 or not 0 <= momentum < 1:
            raise ValueError("decay must be >= 1, keep_fraction in [0, 1] and momentum in [0, 1)")
        self.horizon = horizon
        self.samples = samples
        self.iterations = iterations
        self.elites = elites
        self.beta = beta
        self.decay = decay
        self.keep_fraction = keep_fraction
        self.momentum = momentum
        self.init_std = init_std
        self.min_std = min_std
        self._init_seed(seed)
        self._carried: Tensor | None = None  # [B, E, H', A], the last call's elites

    def reset(self) -> None:
        self._carried = None

    def population(self, iteration: int) -> int:
        """Samples drawn at iteration `iteration` (0-based)."""
        return max(int(self.samples * self.decay ** (-iteration)), 2 * self.elites)

    def _shifted_elites(self, mean: Tensor) -> Tensor | None:
        """The last call's elites one step on, fitted to mean's horizon [B, H, A] -> [B, E, H, A]."""
        carried, self._carried = self._carried, None
        b, h, a = mean.shape
        if carried is None or carried.shape[0] != b or carried.shape[3] != a or carried.device != mean.device:
            return None
        shifted = carried[:, :, 1 : h + 1]  # [B, E, <=H, A]
        missing = h - shifted.shape[2]
        if missing > 0:  # the new horizon reaches further: the mean fills the steps the elites lack
            tail = mean[:, None, h - missing :].expand(-1, carried.shape[1], -1, -1)
            shifted = torch.cat([shifted, tail], dim=2)
        return shifted

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
        low, high = check_bounds(init, low, high)
        mean = clamp(init, low, high)  # [B, H, A]
        std = torch.full_like(mean, self.init_std) * (high - low) / 2
        best_actions, best_cost = mean.clone(), torch.full((b,), float("inf"), device=init.device, dtype=init.dtype)
        kept = self._shifted_elites(mean)  # [B, E, H, A] or None
        keep = math.ceil(self.keep_fraction * self.elites)
        generator = self._generator(init.device)
        for i in range(self.iterations):
            n = self.population(i)
            noise = colored_noise((b, n, a, h), self.beta, init, generator).transpose(2, 3)  # [B, N, H, A]
            candidates = mean[:, None] + std[:, None] * noise
            candidates[:, 0] = mean
            if kept is not None:
                candidates = torch.cat([candidates, kept], dim=1)  # [B, N + K, H, A]
            candidates = clamp(candidates, low, high)
            total = candidates.shape[1]
            cost = check_cost(cost_fn(rollout_fn(candidates), candidates), b, total)  # [B, N + K]
            elite_cost, idx = cost.topk(self.elites, dim=1, largest=False)  # [B, E], best first
            elites = candidates.gather(1, idx[:, :, None, None].expand(-1, -1, h, a))  # [B, E, H, A]
            improved = elite_cost[:, 0] < best_cost
            best_cost = torch.where(improved, elite_cost[:, 0], best_cost)
            best_actions[improved] = elites[improved, 0]
            mean = clamp(self.momentum * mean + (1 - self.momentum) * elites.mean(dim=1), low, high)  # rounding
            std = (self.momentum * std + (1 - self.momentum) * elites.std(dim=1, unbiased=False)).clamp_min(self.min_std)
            kept = elites[:, :keep] if keep else None
        self._carried = elites
        info = {"final_std": std.mean().item(), "best_cost": best_cost.mean().item()}
        return PlanResult(actions=best_actions, cost=best_cost, info=info)
