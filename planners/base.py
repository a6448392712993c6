"""What every planner shares: the result object, the function signatures it is given, seeding and
the checks on what the functions return.

Planners know nothing of models or environments. They are handed
    rollout_fn: actions [B, N, H, A] -> predicted representations [B, N, H, D]
    cost_fn:    (representations [B, N, H, D], actions [B, N, H, A]) -> cost [B, N]
and search action sequences for B independent problems at once (N candidates each), on the
device of `init`. They never log: what they found goes back in PlanResult.info.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

RolloutFn = Callable[[Tensor], Tensor]
CostFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class PlanResult:
    """actions [B, H, A]: the best sequence found per problem; cost [B]: its cost."""

    actions: Tensor
    cost: Tensor
    info: dict[str, float] = field(default_factory=dict)


class Planner(Protocol):
    horizon: int

    def plan(self, rollout_fn: RolloutFn, cost_fn: CostFn, init: Tensor, low: Tensor, high: Tensor) -> PlanResult:
        """init [B, H, A]: starting guess (e.g. the previous plan shifted); low, high [A]: action bounds."""
        ...

    def reset(self) -> None:
        """Forget what was carried between calls (called when new episodes start)."""
        ...


class SeededPlanner:
    """Seeding and checks shared by the planners in this package.

    One generator per device, seeded once: a run's plans are reproducible, yet successive calls
    draw fresh noise. `reset()` forgets anything carried from call to call; the generators are
    kept, so a sequence of episodes is reproducible as a whole.
    """

    horizon: int
    seed: int | None

    def _init_seed(self, seed: int | None) -> None:
        self.seed = seed
        self._generators: dict = {}

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def _randn(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Standard normal noise of `shape`, on like's device and dtype, from this planner's stream."""
        return torch.randn(shape, device=like.device, dtype=like.dtype, generator=self._generator(like.device))

    def reset(self) -> None:
        pass


def check_cost(cost: Tensor, b: int, n: int) -> Tensor:
    """The cost_fn's output, refused with one line unless it is [B, N]."""
    if cost.shape != (b, n):
        raise ValueError(f"cost_fn must return [B, N] = {(b, n)}, got {tuple(cost.shape)}")
    return cost


def check_bounds(init: Tensor, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """low, high [A] on init's device and dtype; refused with one line if they do not fit init [B, H, A]."""
    if init.ndim != 3:
        raise ValueError(f"init must be [B, H, A], got {tuple(init.shape)}")
    low, high = torch.as_tensor(low).to(init), torch.as_tensor(high).to(init)
    if low.shape != (init.shape[2],) or high.shape != (init.shape[2],) or not bool((low <= high).all()):
        raise ValueError(f"low and high must be [A] = [{init.shape[2]}] with low <= high, got {tuple(low.shape)}, "
                         f"{tuple(high.shape)}")
    return low, high


def clamp(actions: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """actions [..., A] clipped into [low, high] [A]."""
    return torch.maximum(torch.minimum(actions, high), low)
