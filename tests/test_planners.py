"""The shared planner tests, run on every planner of configs/planner/: each minimises a known
function from far away, drives an exact point-mass model to its goal, never leaves the action
bounds, refuses a cost of the wrong shape, and is reproducible from its seed. Plus what is
particular to one planner (iCEM's coloured noise and memory, CEM's warm start)."""

from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from agent.configurator import PlanSetup, build_planner
from planners.cem import CEM
from planners.icem import ICEM, colored_noise

PLANNERS = sorted(p.stem for p in (Path(__file__).parents[1] / "configs" / "planner").glob("*.yaml"))
# Search budgets for the exact problems below (the configs' own are sized for the world model).
BUDGETS = {
    "cem": {"samples": 200, "iterations": 25, "elites": 20, "init_std": 1.0, "min_std": 1e-3},
    "mppi": {"samples": 200, "iterations": 25, "init_std": 1.0, "min_std": 1e-3, "temperature": 0.3},
    "icem": {"samples": 200, "iterations": 25, "elites": 20, "init_std": 1.0, "min_std": 1e-3, "beta": 0.0},
    "gradient": {"steps": 150, "lr": 0.1},
    "cem-gd": {"samples": 200, "iterations": 25, "elites": 20, "init_std": 1.0, "min_std": 1e-3},
}
# The hierarchical config's planner is its low level, a CEM (its high level: tests/test_subgoal_search.py).
BUDGETS["hierarchical"] = BUDGETS["cem"]
SMALL = {  # a few samples: for the properties, not the quality of the answer
    "cem": {"samples": 12, "iterations": 2, "elites": 3},
    "mppi": {"samples": 12, "iterations": 2},
    "icem": {"samples": 12, "iterations": 2, "elites": 3},
    "gradient": {"starts": 3, "steps": 3},
    "cem-gd": {"samples": 12, "iterations": 2, "elites": 3, "refine": 2, "gd_steps": 2},
}
SMALL["hierarchical"] = SMALL["cem"]
LOW, HIGH = torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0])


def make(name: str, horizon: int, budget: dict | None = None, **overrides):
    """The planner of configs/planner/<name>.yaml, built as the configurator builds it."""
    cfg = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "configs" / "planner" / f"{name}.yaml"))
    setup = PlanSetup(budget=horizon, decisions=horizon, horizon=horizon,
                      planner_overrides={**(BUDGETS if budget is None else budget).get(name, {}), **overrides},
                      replan_every=1, shrink_horizon=False, cost_weights={}, goal_energy={})
    return build_planner(cfg, setup)


def quadratic(target):
    """rollout = the actions themselves; cost = squared distance to `target` [B, H, A]."""

    def rollout_fn(actions):
        return actions

    def cost_fn(z, actions):
        return (z - target[:, None]).square().sum(dim=(-1, -2))

    return rollout_fn, cost_fn


def test_every_planner_is_tested():
    assert set(PLANNERS) <= set(BUDGETS) and set(PLANNERS) <= set(SMALL), "give a new planner its test budgets"


@pytest.mark.parametrize("name", PLANNERS)
def test_finds_the_minimum_of_a_quadratic_from_far_away(name):
    target = torch.tensor([[[0.6, -0.7], [0.3, 0.2], [-0.5, 0.9]], [[-0.8, 0.1], [0.0, 0.4], [0.7, -0.2]]])  # [2, 3, 2]
    init = torch.full((2, 3, 2), -1.0)  # a corner, far from both targets
    result = make(name, 3).plan(*quadratic(target), init, LOW, HIGH)
    assert result.actions.shape == (2, 3, 2) and result.cost.shape == (2,)
    assert (result.actions - target).abs().max() < 2e-2


@pytest.mark.parametrize("name", PLANNERS)
def test_respects_bounds_and_finds_the_best_feasible_answer(name):
    target = torch.full((1, 4, 2), 3.0)  # outside the box: the best feasible answer is the bound
    low, high = torch.tensor([-1.0, -0.5]), torch.tensor([1.0, 0.5])
    seen = []

    def rollout_fn(actions):
        seen.append(actions.detach().clone())
        return actions

    result = make(name, 4).plan(rollout_fn, quadratic(target)[1], torch.zeros(1, 4, 2), low, high)
    every = torch.cat([s.reshape(-1, 2) for s in seen])
    assert (every >= low).all() and (every <= high).all()
    assert torch.allclose(result.actions, high.expand(1, 4, 2), atol=2e-2)


@pytest.mark.parametrize("name", PLANNERS)
def test_never_returns_worse_than_its_warm_start(name):
    target = torch.tensor([[[0.2, 0.1]]])
    result = make(name, 1, SMALL).plan(*quadratic(target), target.clone(), LOW, HIGH)
    assert result.cost.item() == 0.0  # the warm start was optimal and is always a candidate


@pytest.mark.parametrize("name", PLANNERS)
def test_refuses_a_cost_of_the_wrong_shape(name):
    with pytest.raises(ValueError, match=r"cost_fn must return \[B, N\]"):
        make(name, 2, SMALL).plan(lambda a: a, lambda z, a: z.sum(dim=(-1, -2)).flatten(), torch.zeros(2, 2, 2),
                                  LOW, HIGH)


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


@pytest.mark.parametrize("name", PLANNERS)
def test_mpc_with_an_exact_model_reaches_the_goal(name):
    system = PointMass()
    goal = torch.tensor([[0.4, -0.3], [-0.5, 0.2]])  # [B, 2] goal positions
    state = torch.zeros(2, 4)
    cem = {"samples": 200, "iterations": 8, "elites": 20}
    planner = make(name, 10, {"cem": cem, "hierarchical": cem,
                              "mppi": {"samples": 200, "iterations": 8},
                              "icem": {"samples": 200, "iterations": 8, "elites": 20},
                              "gradient": {"steps": 30, "lr": 0.2},
                              "cem-gd": {"samples": 100, "iterations": 4, "elites": 10}})
    plan = torch.zeros(2, 10, 2)
    for _ in range(40):
        result = planner.plan(
            lambda actions, state=state: system.rollout(state, actions),
            lambda z, actions: (z[..., :2] - goal[:, None, None]).square().sum(-1).mean(-1),
            plan, LOW, HIGH,
        )
        state = system.step(state, result.actions[:, 0])
        plan = torch.cat([result.actions[:, 1:], torch.zeros(2, 1, 2)], dim=1)  # warm start, shifted
    assert (state[:, :2] - goal).norm(dim=1).max() < 0.02


@settings(max_examples=8, deadline=None)
@given(
    name=st.sampled_from(PLANNERS),
    b=st.integers(1, 3),
    h=st.integers(1, 6),
    a=st.integers(1, 3),
    low=st.floats(-3, 0.5),
    width=st.floats(0, 4),
    seed=st.integers(0, 2**31 - 1),
)
@example(name="mppi", b=1, h=1, a=1, low=-1.0, width=0.0, seed=0)  # a flat box: the weighted mean rounded past it
@example(name="cem-gd", b=1, h=1, a=3, low=1.646333228024863e-32, width=1.0, seed=0)  # tanh reparametrisation rounded past low
def test_properties_bounds_shapes_and_seeds(name, b, h, a, low, width, seed):
    """Any problem size and box, even a flat one: candidates and results stay within the bounds, the
    result has the problem's shape, and the same seed gives the same plan."""
    lo, hi = torch.full((a,), low), torch.full((a,), low + width)
    target = torch.linspace(-2, 2, b * h * a).reshape(b, h, a)
    init = torch.linspace(3, -3, b * h * a).reshape(b, h, a)  # partly outside the box
    seen = []

    def rollout_fn(actions):
        seen.append(actions.detach().clone())
        return actions

    cost_fn = quadratic(target)[1]
    seeded = {"seed": seed}
    first = make(name, h, SMALL, **seeded).plan(rollout_fn, cost_fn, init, lo, hi)
    again = make(name, h, SMALL, **seeded).plan(rollout_fn, cost_fn, init, lo, hi)
    assert first.actions.shape == (b, h, a) and first.cost.shape == (b,)
    every = torch.cat([s.reshape(-1, a) for s in seen])
    assert (every >= lo).all() and (every <= hi).all()
    assert (first.actions >= lo).all() and (first.actions <= hi).all()
    assert torch.equal(first.actions, again.actions) and torch.equal(first.cost, again.cost)


def test_colored_noise_has_unit_variance_and_beta_sets_its_smoothness():
    gen = torch.Generator().manual_seed(0)
    like = torch.zeros(())
    for t in (1, 2, 5, 10):
        for beta in (0.0, 2.0):
            noise = colored_noise((20000, t), beta, like, gen)  # [N, T]
            assert noise.var(dim=0).sub(1).abs().max() < 0.06, (t, beta)
    white, red = colored_noise((20000, 10), 0.0, like, gen), colored_noise((20000, 10), 2.0, like, gen)

    def lag1(x):
        return (x[:, 1:] * x[:, :-1]).mean().item()

    assert abs(lag1(white)) < 0.03 and lag1(red) > 0.5


def test_icem_carries_its_elites_into_the_next_decision_until_reset():
    target = torch.tensor([[[0.5, -0.5], [0.5, -0.5], [0.5, -0.5]]])
    icem = ICEM(horizon=3, samples=20, iterations=2, elites=4, seed=0)
    sizes = []

    def rollout_fn(actions):
        sizes.append(actions.shape[1])
        return actions

    cost_fn = quadratic(target)[1]
    icem.plan(rollout_fn, cost_fn, torch.zeros(1, 3, 2), LOW, HIGH)
    icem.plan(rollout_fn, cost_fn, torch.zeros(1, 3, 2), LOW, HIGH)
    icem.reset()
    icem.plan(rollout_fn, cost_fn, torch.zeros(1, 3, 2), LOW, HIGH)
    keep = 2  # ceil(0.3 x 4)
    # population 20 then 16; the second call starts with the 4 shifted elites of the first
    assert sizes == [20, 16 + keep, 20 + 4, 16 + keep, 20, 16 + keep]


def test_cem_keeps_one_noise_stream_per_run():
    """Successive calls draw fresh noise; a planner built again with the same seed repeats them."""
    target = torch.tensor([[[0.3, 0.3]]])
    first, second = CEM(horizon=1, samples=8, iterations=1, elites=2), CEM(horizon=1, samples=8, iterations=1, elites=2)
    a1 = [first.plan(*quadratic(target), torch.zeros(1, 1, 2), LOW, HIGH).actions for _ in range(2)]
    a2 = [second.plan(*quadratic(target), torch.zeros(1, 1, 2), LOW, HIGH).actions for _ in range(2)]
    assert not torch.equal(a1[0], a1[1]) and torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])
