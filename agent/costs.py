"""Cost modules: what the planner minimises. Each is a pure function of (representations
[B, N, H, D], actions [B, N, H, A], goal [B, D]) -> [B, N]: the goal is an argument, never state,
so one cost scores plans toward the final goal and toward a subgoal alike. A module that also
needs where the plans start (`uses_start = True`: the model disagreement) takes a fourth argument,
start = (history latents [B, K, D], past actions [B, K-1, A]). `CompositeCost` adds them with
weights; `aim(cost, goal, start)` binds goal and start, giving the (z, actions) -> [B, N] function
a planner takes."""

from __future__ import annotations

import torch
from torch import Tensor


def over_steps(per_step: Tensor, last_weight: float, step_weight: float) -> Tensor:
    """per_step [B, N, H] -> [B, N]: the last planned step weighted by `last_weight`, every earlier
    one by `step_weight`, summed."""
    weights = torch.full((per_step.shape[-1],), step_weight, device=per_step.device, dtype=per_step.dtype)
    weights[-1] = last_weight
    return (per_step * weights).sum(-1)


class GoalEnergy:
    """Energy between predicted representations and the goal's.

    `last_weight` weighs the last predicted step and `step_weight` every earlier step, so the
    planner can aim for the goal at the horizon (success is judged at the end of the budget)
    while still preferring paths that get there early and stay.

    With a spatial representation (`grid` = (cells per side, numbers per cell)), `scales` adds the
    same distance between average-pooled copies of the token grid (2 = 2x2 cells pooled): far from
    the goal the arm's tokens do not overlap the goal's and the fine energy is flat, while a
    coarser grid still says which way to move.
    """

    def __init__(self, metric: str = "l2", last_weight: float = 1.0, step_weight: float = 0.0,
                 scales: tuple[int, ...] = (1,), grid: tuple[int, int] | None = None):
        if metric not in ("l2", "l1"):
            raise ValueError(f"metric must be 'l2' or 'l1', got {metric!r}")
        if tuple(scales) != (1,) and grid is None:
            raise ValueError("energy scales other than (1,) need a spatial representation (grid)")
        self.metric = metric
        self.last_weight = last_weight
        self.step_weight = step_weight
        self.scales = tuple(scales)
        self.grid = grid

    def _distance(self, diff: Tensor) -> Tensor:
        """diff [..., D] -> [...], summed over the scales."""
        total = 0.0
        for scale in self.scales:
            d = diff
            if scale > 1:
                cells, channels = self.grid
                lead = diff.shape[:-1]
                # [..., cells*cells*C] -> [L, C, cells, cells] -> pooled -> [..., (cells/scale)^2 * C]
                d = diff.reshape(-1, cells, cells, channels).permute(0, 3, 1, 2)
                d = torch.nn.functional.avg_pool2d(d, scale).permute(0, 2, 3, 1).reshape(*lead, -1)
            total = total + (d.square().mean(-1) if self.metric == "l2" else d.abs().mean(-1))
        return total

    def __call__(self, z: Tensor, actions: Tensor, goal: Tensor) -> Tensor:
        """z [B, N, H, D], goal [B, D]: the latent each of the B problems aims at -> [B, N]."""
        energy = self._distance(z - goal[:, None, None])  # [B, N, H, D] -> [B, N, H]
        return over_steps(energy, self.last_weight, self.step_weight)


class CriticDistance:
    """The reach critic's estimated env steps from the predicted representations to the goal
    (agent/critic.py). It stays informative far from the goal, where the token energy is flat;
    the energy keeps the precision near it.

    `reduce`: "last" scores the plan's last step (the energy's step weights already reward
    arriving early); "min" its closest approach along the plan, so a plan that passes near the
    goal (or through a door toward it) is not penalised for where its tail drifts."""

    REDUCTIONS = ("last", "min")

    def __init__(self, critic, reduce: str = "last"):
        if reduce not in self.REDUCTIONS:
            raise ValueError(f"critic reduce must be one of {self.REDUCTIONS}, got {reduce!r}")
        self.critic, self.reduce = critic, reduce

    def __call__(self, z: Tensor, actions: Tensor, goal: Tensor) -> Tensor:
        """z [B, N, H, D], goal [B, D] -> [B, N]. The goal is embedded once per call, not per candidate."""
        target = self.critic.embed(goal)  # [B, dim]
        if self.reduce == "last":
            return (self.critic.embed(z[:, :, -1]) - target[:, None]).norm(dim=-1)  # [B, N, D] -> [B, N]
        return (self.critic.embed(z) - target[:, None, None]).norm(dim=-1).amin(-1)  # [B, N, H, D] -> [B, N]


class ReadoutDistance:
    """Mean squared distance between the env's probe targets read off the predicted representations
    and off the goal's (agent/readout.py), in standardised units, weighted over the planned steps
    as the goal energy is (`last_weight` the last, `step_weight` every earlier one). It weighs the
    scene's parts by the numbers the env reports (positions, an angle), not by how many tokens
    they change. `target_weights` [K] weigh the targets (all 1 by default; the mean is over
    the weighted squares, so weights of 1 give the plain mean)."""

    def __init__(self, readout, last_weight: float = 1.0, step_weight: float = 0.0,
                 target_weights: list[float] | None = None):
        self.readout, self.last_weight, self.step_weight = readout, last_weight, step_weight
        self.target_weights = None if target_weights is None else torch.as_tensor(target_weights, dtype=torch.float32)
        if self.target_weights is not None and self.target_weights.shape[0] != readout.y_mean.shape[0]:
            raise ValueError(f"{self.target_weights.shape[0]} readout target weights for a readout of "
                             f"{readout.y_mean.shape[0]} targets; give one per probe target")

    def __call__(self, z: Tensor, actions: Tensor, goal: Tensor) -> Tensor:
        """z [B, N, H, D], goal [B, D] -> [B, N]. The goal is read once per call, not per candidate."""
        target = self.readout(goal)  # [B, K]
        square = (self.readout(z) - target[:, None, None]).square()  # [B, N, H, K]
        if self.target_weights is not None:
            square = square * self.target_weights.to(square)
        distance = square.mean(-1)  # [B, N, H, K] -> [B, N, H]
        return over_steps(distance, self.last_weight, self.step_weight)


class ActionMagnitude:
    """Mean squared action: prefers gentle motor commands."""

    def __call__(self, z: Tensor, actions: Tensor, goal: Tensor) -> Tensor:
        return actions.square().mean(dim=(-1, -2))


class ActionSmoothness:
    """Mean squared change between consecutive actions: prefers smooth commands."""

    def __call__(self, z: Tensor, actions: Tensor, goal: Tensor) -> Tensor:
        if actions.shape[2] < 2:
            return actions.new_zeros(actions.shape[:2])
        return (actions[:, :, 1:] - actions[:, :, :-1]).square().mean(dim=(-1, -2))


class ModelDisagreement:
    """How far an ensemble of predictors (world_model/ensemble.py), each rolling the plan out on its
    own from the plan's start, lands from the world model's predicted representations, averaged over
    the plan's steps: an estimate of the world model's squared error along the plan, in the goal
    energy's units. Weighted, it makes the planner risk-averse: it prefers plans whose outcome the
    model is sure of (away from contacts and walls it has seen little of)."""

    uses_start = True

    def __init__(self, ensemble):
        self.ensemble = ensemble

    def __call__(self, z: Tensor, actions: Tensor, goal: Tensor, start: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """z [B, N, H, D], actions [B, N, H, A], start (latents [B, K, D], past actions [B, K-1, A]) -> [B, N]."""
        if start is None:
            raise ValueError("the model-disagreement cost needs the plans' start: bind it with aim(cost, goal, start)")
        return self.ensemble.disagreement(*start, z, actions).mean(-1)  # [B, N, H] -> [B, N]


class CompositeCost:
    """Weighted sum of cost modules; terms with weight 0 are skipped."""

    def __init__(self, terms: dict[str, tuple[float, object]]):
        self.terms = {name: (w, fn) for name, (w, fn) in terms.items() if w != 0}
        if not self.terms:
            raise ValueError("every cost weight is 0; give at least the goal energy a weight")
        self.uses_start = any(getattr(fn, "uses_start", False) for _, fn in self.terms.values())

    def __call__(self, z: Tensor, actions: Tensor, goal: Tensor, start: tuple[Tensor, Tensor] | None = None) -> Tensor:
        return sum(self.breakdown(z, actions, goal, start).values())

    def breakdown(self, z: Tensor, actions: Tensor, goal: Tensor,
                  start: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
        """Each weighted term separately, [B, N] each (for videos and diagnostics)."""
        return {name: w * (fn(z, actions, goal, start) if getattr(fn, "uses_start", False) else fn(z, actions, goal))
                for name, (w, fn) in self.terms.items()}


def aim(cost, goal: Tensor, start: tuple[Tensor, Tensor] | None = None):
    """The planner's cost_fn: (z [B, N, H, D], actions [B, N, H, A]) -> cost(z, actions, goal) [B, N],
    goal [B, D] bound, and `start` (latents [B, K, D], past actions [B, K-1, A]) for a cost that
    reads where the plans start."""
    def cost_fn(z: Tensor, actions: Tensor) -> Tensor:
        return cost(z, actions, goal, start) if getattr(cost, "uses_start", False) else cost(z, actions, goal)

    return cost_fn


def build_cost(weights: dict, goal_energy: dict, grid: tuple[int, int] | None = None, critic=None,
               ensemble=None, readout=None) -> CompositeCost:
    """The composite cost from the configurator's weights {goal, critic, action_magnitude,
    action_smoothness, disagreement, readout} and goal-energy settings {metric, last_weight,
    step_weight, scales}; `grid` describes a spatial representation (cells per side, numbers per
    cell); `critic` is a trained ReachCritic, required when the critic weight is not 0; `ensemble` a
    fitted PredictorEnsemble, required when the disagreement weight is not 0; `readout` a fitted
    ProbeReadout, required when the readout weight is not 0 (it takes the goal energy's step weights)."""
    terms = {
        "goal": (weights["goal"], GoalEnergy(**goal_energy, grid=grid)),
        "action_magnitude": (weights["action_magnitude"], ActionMagnitude()),
        "action_smoothness": (weights["action_smoothness"], ActionSmoothness()),
    }
    if weights.get("critic", 0.0):
        if critic is None:
            raise ValueError("the configurator gives the critic a weight but no critic was passed; pass the one "
                             "agent.run trains, or set configurator.<goal kind>.critic_weight=0")
        terms["critic"] = (weights["critic"], CriticDistance(critic, weights.get("critic_reduce", "last")))
    if weights.get("disagreement", 0.0):
        if ensemble is None:
            raise ValueError("the configurator gives the model disagreement a weight but no ensemble was passed; pass "
                             "the one agent.run fits, or set configurator.<goal kind>.disagreement_weight=0")
        terms["disagreement"] = (weights["disagreement"], ModelDisagreement(ensemble))
    if weights.get("readout", 0.0):
        if readout is None:
            raise ValueError("the configurator gives the probe readout a weight but no readout was passed; pass the one "
                             "agent.run fits, or set configurator.<goal kind>.readout_weight=0")
        terms["readout"] = (weights["readout"], ReadoutDistance(readout, goal_energy.get("last_weight", 1.0),
                                                                goal_energy.get("step_weight", 0.0),
                                                                weights.get("readout_targets")))
    return CompositeCost(terms)
