"""Policies the episode loop can run on a batch of B episodes: the latent planner and baselines.

Each has `reset(obs, specs, envs)` and `act(obs, decision) -> (actions [B, A], info)`.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from agent.configurator import PlanSetup
from agent.costs import aim
from planners.base import clamp


def _frames(obs: list[dict], key: str, device: torch.device) -> torch.Tensor:
    """uint8 [B, 1, H, W, 3] from the B observations."""
    return torch.from_numpy(np.stack([o[key] for o in obs]))[:, None].to(device)


def near_prior(cost_fn, proposal: torch.Tensor, weight: float):
    """cost_fn (z [B, N, H, D], actions [B, N, H, A]) -> [B, N], plus `weight` times the mean squared
    distance of each plan's actions from the prior's proposal [B, H, A]."""

    def cost(z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return cost_fn(z, actions) + weight * (actions - proposal[:, None]).square().mean((-2, -1))

    return cost


class PlanningPolicy:
    """Observe, encode, ask the goal source where to aim, plan in latent space, act: receding-horizon
    MPC with a warm start."""

    name = "planner"

    def __init__(self, world_model, planner, cost, source, setup: PlanSetup, device: torch.device, imagine: int = 0,
                 prior=None, readout=None):
        """planner: a flat planner (planners/); cost: (z [B, N, H, D], actions [B, N, H, A], goal [B, D])
        -> [B, N] (agent/costs.py); source: the goal kind's goal source (agent/goal_sources.py), asked
        before every plan which latent to aim at. imagine: for the first `imagine` episodes of a batch
        (those whose video is kept), each chosen plan is rolled out once more, and act's
        info["imagined"] [imagine, H', D] holds its predicted latents from this decision on (row 0:
        the frame this decision's action should lead to). prior: the action prior (agent/prior.py) the
        planner starts every search from, needed when setup.warm_start is "prior" or compare_starts
        names it. readout: the probe readout (agent/readout.py) that judges, when setup.hold_within is
        above 0, whether the current frame already meets the goal (then the episode holds still)."""
        if "prior" in (setup.warm_start, *setup.compare_starts) and prior is None:
            raise ValueError("warm_start=prior or compare_starts=[prior] asks the action prior for a first guess; pass prior=")
        if setup.hold_within and readout is None:
            raise ValueError("hold_within > 0 reads the frame and the goal with the probe readout; pass readout=")
        self.wm, self.planner, self.cost, self.source, self.prior = world_model, planner, cost, source, prior
        self.readout = readout
        self.setup, self.device, self.imagine = setup, device, imagine

    @torch.no_grad()
    def reset(self, obs: list[dict], specs, envs) -> None:
        space = envs[0].action_space
        self.low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)  # [A]
        self.high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)  # [A]
        self.z_goal = self.wm.encode(_frames(obs, "goal", self.device))[:, 0]  # [B, D]
        self.source.reset(self.z_goal)
        # The frame before the start, when the episode knows it (a start taken mid-trajectory);
        # otherwise the start is at rest and repeating the first frame with a zero action is exact.
        previous = [
            {"pixels": env.render_sim_state(np.asarray(s.previous_state)) if s.previous_state is not None else o["pixels"]}
            for o, s, env in zip(obs, specs, envs)
        ]
        self.z_prev = self.wm.encode(_frames(previous, "pixels", self.device))[:, 0]  # [B, D]
        rest = np.zeros(space.shape)
        self.last_action = torch.tensor(
            np.array([s.previous_action if s.previous_action is not None else rest for s in specs]),
            dtype=torch.float32, device=self.device,
        )  # [B, A]
        self.plan: torch.Tensor | None = None  # [B, H, A], remaining actions of the current plan
        self.planner.reset()  # new episodes: nothing carried over from the last ones
        self.steps_since_plan = 0
        self.rest = torch.as_tensor(np.clip(rest, space.low, space.high), dtype=torch.float32, device=self.device)  # [A]
        if self.setup.hold_within:
            self.env, self.goal_kind = envs[0], specs[0].goal_kind
            self.goal_read = self.readout.targets(self.z_goal).cpu().numpy()  # [B, K]

    def _first_guess(self, name: str, z_hist: torch.Tensor, goal: torch.Tensor, horizon: int) -> torch.Tensor:
        """The first guess `name` (agent/configurator.py WARM_STARTS) [B, horizon, A]: "prior" the action
        prior's proposal toward `goal` [B, D] from z_hist [B, 2, D]; "shifted" the previous plan shifted by
        the executed steps, padded with zeros; "hold" zeros."""
        if name == "prior":
            return self.prior.propose(z_hist, self.last_action, goal, horizon)
        init = torch.zeros(len(z_hist), horizon, self.low.shape[0], device=self.device)
        if name == "shifted" and self.plan is not None:
            keep = min(horizon, self.plan.shape[1])
            init[:, :keep] = self.plan[:, :keep]
        return init

    def _cheapest(self, guesses: torch.Tensor, rollout_fn, cost_fn) -> torch.Tensor:
        """guesses [B, S, H, A] -> the cheapest of each row under cost_fn [B, H, A] (clipped to the bounds)."""
        guesses = clamp(guesses, self.low, self.high)
        cost = cost_fn(rollout_fn(guesses), guesses)  # [B, S]
        return guesses[torch.arange(len(guesses), device=guesses.device), cost.argmin(1)]

    @torch.no_grad()
    def act(self, obs: list[dict], decision: int) -> tuple[np.ndarray, dict]:
        start = time.perf_counter()
        z_now = self.wm.encode(_frames(obs, "pixels", self.device))[:, 0]  # [B, D]
        z_hist = torch.stack([self.z_prev, z_now], dim=1)  # [B, 2, D]
        k = self.wm.cfg.history
        if k != 2:
            raise ValueError(f"the episode loop keeps a 2-frame history, but the world model has history={k}")
        energy = self.wm.energy(z_now, self.z_goal)  # [B]
        planned = False
        if self.plan is None or self.steps_since_plan >= self.setup.replan_every or self.plan.shape[1] == 0:
            horizon = self.setup.horizon_at(decision)
            past = self.last_action[:, None]  # [B, 1, A]

            def rollout_fn(actions: torch.Tensor) -> torch.Tensor:
                """actions [B, N, H, A] -> z [B, N, H, D]"""
                return self.wm.rollout_candidates(z_hist, actions, past_actions=past)

            goal = self.source.goal(z_now, decision)  # [B, D]
            cost_fn = aim(self.cost, goal, (z_hist, past))
            init = self._first_guess(self.setup.warm_start, z_hist, goal, horizon)  # [B, H, A]
            weight = self.setup.cost_weights.get("prior", 0.0)
            if weight:  # the configurator allows it only with warm_start=prior: init is the proposal
                cost_fn = near_prior(cost_fn, init, weight)
            if self.setup.compare_starts:
                others = [self._first_guess(name, z_hist, goal, horizon) for name in self.setup.compare_starts]
                init = self._cheapest(torch.stack([init, *others], 1), rollout_fn, cost_fn)  # [B, H, A]
            result = self.planner.plan(rollout_fn, cost_fn, init, self.low, self.high)
            self.plan, self.steps_since_plan, planned = result.actions, 0, True
            self.plan_cost = result.cost.cpu().numpy()  # [B]
            if self.imagine:
                k = min(self.imagine, len(z_now))
                self.imagined = self.wm.rollout(z_hist[:k], self.plan[:k], past_actions=past[:k])  # [k, H, D]
        info = {"energy": energy.cpu().numpy(), "plan_cost": self.plan_cost}
        if self.imagine:
            info["imagined"] = self.imagined[:, self.steps_since_plan:]  # [k, H', D], row 0: after this action
        action = self.plan[:, 0]  # [B, A]
        if self.setup.action_scale != 1.0:  # detuned: the command scaled toward the rest action
            action = self.rest + self.setup.action_scale * (action - self.rest)
        if self.setup.hold_within:
            now_read = self.readout.targets(z_now).cpu().numpy()  # [B, K]
            held = self.env.probe_reached(self.goal_kind, now_read, self.goal_read, self.setup.hold_within)  # [B]
            action = torch.where(torch.as_tensor(held, device=self.device)[:, None], self.rest, action)
        self.plan = self.plan[:, 1:]
        self.steps_since_plan += 1
        self.z_prev, self.last_action = z_now, action
        plan_ms = 1000 * (time.perf_counter() - start)
        return action.cpu().numpy(), {"plan_ms": plan_ms if planned else 0.0, **info}


class RandomPolicy:
    """Uniform random actions within the env's action bounds (baseline).

    Every reset restarts the stream of `seed`; the evaluation gives each chunk of episodes its own
    seed (agent/protocols.py: chunk_seed), so chunks draw different actions.
    """

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def reset(self, obs, specs, envs) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.space = envs[0].action_space

    def act(self, obs, decision: int) -> tuple[np.ndarray, dict]:
        shape = (len(obs), *self.space.shape)  # [B, A]
        return self.rng.uniform(self.space.low, self.space.high, shape).astype(np.float32), {"plan_ms": 0.0}


class ZeroPolicy:
    """Does nothing: the zero command every step, clipped into the action bounds (baseline)."""

    name = "zero"

    def reset(self, obs, specs, envs) -> None:
        space = envs[0].action_space
        self.action = np.clip(np.zeros(space.shape, np.float32), space.low, space.high)  # [A]

    def act(self, obs, decision: int) -> tuple[np.ndarray, dict]:
        return np.tile(self.action, (len(obs), 1)), {"plan_ms": 0.0}
