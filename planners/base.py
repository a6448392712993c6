"""What every planner shares: the result object and the function signatures it is given.

Planners know nothing of models or environments. They are handed
    rollout_fn: actions [B, N, H, A] -> predicted representations [B, N, H, D]
    cost_fn:    (representations [B, N, H, D], actions [B, N, H, A]) -> cost [B, N]
and search action sequences for B independent problems at once (N candidates each).
They never log: what they found goes back in PlanResult.info.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

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
