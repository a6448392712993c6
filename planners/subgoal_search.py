"""The high level of hierarchical planning: a search over macro-actions far ahead with a level-2
model, whose first predicted representation is handed down as a flat planner's goal (the subgoal).
agent/goal_sources.py (MacroSubgoal) wires it to the level-2 predictor and the low level."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from planners.base import CostFn, Planner, RolloutFn


class SubgoalSearch:
    """A planner over macro-actions that answers "which representation should the low level aim at now".

    `subgoal(...)` searches `high_horizon` macro-actions (each k decisions) with the level-2
    rollout and a cost toward the high level's goal; the first predicted high-level representation,
    k decisions ahead, is the subgoal. With `hold` the search is over one action held for the k
    decisions of each macro step ([Hh, A] instead of [Hh, k*A]: a far smaller space, and the
    behaviour video's persistent headings look like it). It searches again every `replan_every`
    decisions and warm-starts from its previous plan, shifted by the macro steps executed since.
    Between searches the subgoal stays the plan's first macro step (`lead=None`), or, with `lead` =
    L decisions, moves along the plan to the first macro step that ends at least L decisions after
    the current one: a target the low level cannot reach within its horizon keeps it moving instead
    of braking at a subgoal it is about to reach.

    Knows nothing of models: the caller passes the level-2 rollout function and the cost, and the
    search planner `planner` (any planner of this package, seeded by whoever builds it).
    """

    def __init__(self, planner: Planner, high_horizon: int = 8, replan_every: int = 1, hold: bool = True,
                 lead: int | None = None):
        if high_horizon < 1 or replan_every < 1 or (lead is not None and lead < 1):
            raise ValueError("high_horizon, replan_every and lead must be >= 1")
        self.high = planner
        self.high_horizon, self.replan_every, self.hold, self.lead = high_horizon, replan_every, hold, lead
        self.reset()

    def reset(self) -> None:
        """New episodes: nothing carried over from the last ones."""
        self.high.reset()
        self._macro: Tensor | None = None  # [B, Hh, A or k*A], the last high-level plan
        self._since = 0  # decisions since the last high-level plan
        self._z: Tensor | None = None  # [B, Hh, D], the last high-level plan's predictions
        self._stop: Tensor | None = None  # [B], the macro step where that plan is best stopped

    def subgoal(self, high_rollout_fn: RolloutFn, high_cost_fn: CostFn, batch: int, low: Tensor, high: Tensor, k: int,
                decisions_left: int) -> tuple[Tensor, Tensor]:
        """The low level's goal for this decision.

        Args:
            high_rollout_fn: macro-actions [B, N, Hh, k*A] -> representations [B, N, Hh, D]
            high_cost_fn: (representations [B, N, Hh, D], macro-actions [B, N, Hh, k*A]) -> cost [B, N]
            batch: B, the number of problems
            low, high: primitive action bounds [A]
            k: decisions per macro step
            decisions_left: decisions until the end of the budget
        Returns:
            (subgoal [B, D], the predicted representation after the first macro step (or the
             step `lead` picks); arrived [B], True where the plan reaches the goal within that
             step, so the low level should aim at the final goal itself)
        """
        horizon = max(1, min(self.high_horizon, math.ceil(decisions_left / k)))
        due = self._macro is None or self._since >= self.replan_every
        if due:
            rollout_fn, cost_fn = high_rollout_fn, high_cost_fn
            lo, hi = low, high
            if self.hold:
                def rollout_fn(held, f=high_rollout_fn):  # [B, N, Hh, A] -> [B, N, Hh, k*A]: k copies in a row
                    return f(held.repeat(1, 1, 1, k))

                def cost_fn(z, held, f=high_cost_fn):
                    return f(z, held.repeat(1, 1, 1, k))
            else:
                lo, hi = low.repeat(k), high.repeat(k)
            result = self.high.plan(rollout_fn, cost_fn, self._warm_start(batch, horizon, k, lo), lo, hi)
            self._macro, self._since = result.actions, 0
            with torch.no_grad():
                plan = result.actions[:, None]  # [B, 1, Hh, A']
                z = rollout_fn(plan)  # [B, 1, Hh, D]
                # The cost of stopping after each macro step: where the plan arrives. A plan that
                # arrives by the subgoal's macro step needs no subgoal any more.
                stops = torch.stack([cost_fn(z[:, :, : j + 1], plan[:, :, : j + 1])[:, 0] for j in range(z.shape[2])], -1)
                self._z, self._stop = z[:, 0], stops.argmin(dim=-1)  # [B, Hh, D], [B]
        step = 0 if self.lead is None else min(self._z.shape[1], math.ceil((self._since + self.lead) / k)) - 1
        self._since += 1
        return self._z[:, step], self._stop <= step

    def _warm_start(self, batch: int, horizon: int, k: int, bound: Tensor) -> Tensor:
        """The last high-level plan shifted by the macro steps done since, zero-padded: [B, Hh, A']
        (A' = bound's size: A held, or k*A)."""
        if self._macro is None or self._macro.shape[0] != batch or self._macro.shape[2] != bound.shape[0]:
            return bound.new_zeros(batch, horizon, bound.shape[0])
        shift = self._since // k
        kept = self._macro[:, shift : shift + horizon]
        pad = horizon - kept.shape[1]
        return torch.cat([kept, kept.new_zeros(kept.shape[0], pad, kept.shape[2])], dim=1) if pad else kept
