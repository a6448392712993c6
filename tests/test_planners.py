"""Planners: CEM minimises a known function, respects bounds, and drives a toy system to its goal."""

import torch

from planners.cem import CEM


def quadratic(target):
    """rollout = the actions themselves; cost = squared distance to `target` [B, H, A]."""

    def rollout_fn(actions):
        return actions

    def cost_fn(z, actions):
        return (z - target[:, None]).square().sum(dim=(-1, -2))

    return rollout_fn, cost_fn


def test_cem_finds_the_minimum_of_a_quadratic_from_far_away():
    target = torch.tensor([[[0.6, -0.7], [0.3, 0.2], [-0.5, 0.9]], [[-0.8, 0.1], [0.0, 0.4], [0.7, -0.2]]])  # [2, 3, 2]
    cem = CEM(horizon=3, samples=200, iterations=25, elites=20, init_std=1.0, min_std=1e-3, seed=0)
    init = torch.full((2, 3, 2), -1.0)  # a corner, far from both targets
    result = cem.plan(*quadratic(target), init, torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]))
    assert result.actions.shape == (2, 3, 2) and result.cost.shape == (2,)
    assert (result.actions - target).abs().max() < 1e-2


def test_cem_respects_bounds():
    target = torch.full((1, 4, 2), 3.0)  # outside the box: the best feasible answer is the bound
    cem = CEM(horizon=4, samples=100, iterations=20, elites=10, min_std=0.01, seed=1)
    low, high = torch.tensor([-1.0, -0.5]), torch.tensor([1.0, 0.5])
    seen = []

    def rollout_fn(actions):
        seen.append(actions.clone())
        return actions

    result = cem.plan(rollout_fn, quadratic(target)[1], torch.zeros(1, 4, 2), low, high)
    every = torch.cat(seen)
    assert (every >= low).all() and (every <= high).all()
    assert torch.allclose(result.actions, torch.tensor([1.0, 0.5]).expand(1, 4, 2), atol=1e-2)


def test_cem_never_returns_worse_than_its_warm_start():
    target = torch.tensor([[[0.2, 0.1]]])
    cem = CEM(horizon=1, samples=8, iterations=1, elites=2, init_std=1.0, seed=3)
    rollout_fn, cost_fn = quadratic(target)
    result = cem.plan(rollout_fn, cost_fn, target.clone(), torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]))
    assert result.cost.item() == 0.0  # the warm start was optimal and is always a candidate


class PointMass:
    """Exact model of a 2-D point mass: state [x, y, vx, vy], force action in [-1, 1]^2."""

    dt, gain, damping = 0.1, 2.0, 0.5

    def step(self, state, action):
        pos, vel = state[..., :2], state[..., 2:]
        vel = vel * (1 - self.damping * self.dt) + self.gain * self.dt * action
        return torch.cat([pos + self.dt * vel, vel], dim=-1)

    def rollout(self, state, actions):
        """state [B, 4], actions [B, N, H, A] -> states [B, N, H, 4]"""
        s = state[:, None].expand(-1, actions.shape[1], -1)
        out = []
        for h in range(actions.shape[2]):
            s = self.step(s, actions[:, :, h])
            out.append(s)
        return torch.stack(out, dim=2)


def test_mpc_with_an_exact_model_reaches_the_goal():
    system = PointMass()
    goal = torch.tensor([[0.4, -0.3], [-0.5, 0.2]])  # [B, 2] goal positions
    state = torch.zeros(2, 4)
    cem = CEM(horizon=10, samples=200, iterations=8, elites=20, seed=0)
    plan = torch.zeros(2, 10, 2)
    for _ in range(40):
        result = cem.plan(
            lambda actions, state=state: system.rollout(state, actions),
            lambda z, actions: (z[..., :2] - goal[:, None, None]).square().sum(-1).mean(-1),
            plan, torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]),
        )
        state = system.step(state, result.actions[:, 0])
        plan = torch.cat([result.actions[:, 1:], torch.zeros(2, 1, 2)], dim=1)  # warm start, shifted
    assert (state[:, :2] - goal).norm(dim=1).max() < 0.02
