"""The level-2 predictor learns k-step transitions, and a flat planner led by the subgoal search
(hierarchical planning) goes around a wall where the same planner alone is stuck in front of it."""

import pytest
import torch
from conftest import flip_last_byte

from agent.costs import aim
from planners.cem import CEM
from planners.subgoal_search import SubgoalSearch
from world_model.checkpoint import CheckpointError
from world_model.macro import MacroConfig, fit_macro, load_macro, save_macro

LOW, HIGH = torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0])


def test_level_2_predictor_learns_k_step_transitions_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(2, 8, generator=g)  # z_{t+1} = z_t + a_t @ mix: k steps add up k actions
    actions = torch.rand(60, 30, 2, generator=g) * 2 - 1  # [E, T, A]
    z = torch.cat([torch.zeros(60, 1, 8), torch.cumsum(actions[:, :-1] @ mix, dim=1)], dim=1)  # [E, T, D]
    cfg = MacroConfig(k=3, width=64, depth=1, steps=600, batch_size=128, rollout=2)
    model, stats = fit_macro(z[:50], actions[:50], z[50:], actions[50:], cfg, progress=False)
    assert len(stats["held_out_error"]) == 2
    for err, copy in zip(stats["held_out_error"], stats["held_out_copy_last"]):
        assert err < 0.1 * copy  # far better than copying the start latent
    save_macro(tmp_path / "m", model, stats)
    again = load_macro(tmp_path / "m")
    macro = actions[:4, :6].reshape(4, 2, 6)  # [B, H, k*A]
    assert torch.equal(again.rollout(z[:4, 0], macro), model.rollout(z[:4, 0], macro))
    weights = tmp_path / "m" / "macro.safetensors"
    flip_last_byte(weights)
    with pytest.raises(CheckpointError, match="sha256"):
        load_macro(tmp_path / "m")


class WallWorld:
    """A point moving at up to 0.1 per step in the plane; a wall on x = 0 with a door at y > 0.6.
    A step that would cross the wall outside the door stops just before it."""

    speed = 0.1

    def step(self, pos, action):
        new = pos + self.speed * action
        crosses = (torch.sign(new[..., 0]) != torch.sign(pos[..., 0])) & (new[..., 1] <= 0.6)
        blocked = torch.stack([torch.sign(pos[..., 0]) * 1e-3, new[..., 1]], dim=-1)
        return torch.where(crosses[..., None], blocked, new)

    def rollout(self, pos, actions):
        """pos [B, 2], actions [B, N, H, A] -> positions [B, N, H, 2]"""
        p = pos[:, None].expand(-1, actions.shape[1], -1)
        out = []
        for h in range(actions.shape[2]):
            p = self.step(p, actions[:, :, h])
            out.append(p)
        return torch.stack(out, dim=2)


def goal_cost(z, actions, goal):
    """Squared distance to the goal [B, 2], last step weighted fully and earlier ones a little: [B, N]."""
    d = (z - goal[:, None, None]).square().sum(-1)  # [B, N, H]
    return d[..., -1] + 0.1 * d.mean(-1)


def _drive(planner, world, start, goal, decisions, search=None, k=None):
    """Plans and steps `decisions` times; with `search`, toward its subgoal while more than k decisions are left."""
    pos = start.clone()
    planner.reset()
    if search is not None:
        search.reset()
    plan = torch.zeros(start.shape[0], 5, 2)
    for d in range(decisions):
        left = decisions - d
        aim_at = goal
        if search is not None and left > k:

            def high_rollout_fn(macro, pos=pos):  # [B, N, Hh, k*A] -> [B, N, Hh, 2]: k exact steps per macro step
                b, n, hh, _ = macro.shape
                return world.rollout(pos, macro.reshape(b, n, hh * k, 2))[:, :, k - 1 :: k]

            subgoal, arrived = search.subgoal(high_rollout_fn, aim(goal_cost, goal), start.shape[0], LOW, HIGH, k, left)
            aim_at = torch.where(arrived[:, None], goal, subgoal)
        result = planner.plan(lambda a, pos=pos: world.rollout(pos, a), aim(goal_cost, aim_at), plan, LOW, HIGH)
        pos = world.step(pos, result.actions[:, 0])
        plan = torch.cat([result.actions[:, 1:], torch.zeros(start.shape[0], 1, 2)], dim=1)
    return (pos - goal).norm(dim=-1)


def test_hierarchical_planning_goes_through_the_door_where_flat_planning_is_stuck():
    world = WallWorld()
    start, goal = torch.tensor([[-0.5, 0.0], [-0.3, -0.2]]), torch.tensor([[0.5, 0.0], [0.4, 0.1]])
    flat = CEM(horizon=5, samples=100, iterations=4, elites=10, seed=0)
    stuck = _drive(flat, world, start, goal, decisions=40)
    low = CEM(horizon=5, samples=100, iterations=4, elites=10, seed=0)
    search = SubgoalSearch(CEM(samples=200, iterations=6, elites=20, init_std=1.0, seed=1), high_horizon=8,
                           replan_every=1, hold=True)
    reached = _drive(low, world, start, goal, decisions=40, search=search, k=5)
    assert (stuck > 0.3).all(), stuck  # pressed against the wall
    assert (reached < 0.1).all(), reached


def test_the_low_level_weighs_the_critic_toward_the_subgoal_only_when_configured():
    from types import SimpleNamespace

    from agent.configurator import Configurator, TaskSettings
    from agent.evaluate import plan_parts
    from agent.goal_sources import FinalGoal, MacroSubgoal

    class Env:
        name, action_repeat = "fake", 5
        goal_kinds = {"far": type("Kind", (), {"budget": 50})()}

    critic = object()  # build_cost only stores it
    modules = {"critic": critic, "macro": SimpleNamespace(k=2)}
    for subgoal_weight in (0.0, 0.5):
        setup = Configurator({"far": TaskSettings(critic_weight=2.0, subgoal_critic_weight=subgoal_weight)},
                             Env()).setup("far", "hierarchical")
        source, low = plan_parts(setup, None, modules, SubgoalSearch(CEM()), LOW, HIGH)
        assert isinstance(source, MacroSubgoal) and isinstance(source.inner, FinalGoal)
        assert source.cost.terms["critic"][0] == 2.0  # the high level scores toward the goal with the full cost
        assert ("critic" in low.terms) == bool(subgoal_weight)
        if subgoal_weight:
            assert low.terms["critic"][0] == subgoal_weight and low.terms["critic"][1].critic is critic
    flat_source, flat = plan_parts(setup, None, {"critic": critic})
    assert isinstance(flat_source, FinalGoal) and flat.terms["critic"][0] == 2.0


@pytest.mark.parametrize("lead", [None, 4])
def test_the_subgoal_moves_along_the_high_plan_only_with_a_lead(lead):
    k, low_bound, high_bound = 4, -torch.ones(2), torch.ones(2)
    goal = torch.tensor([[6.0, 0.0]])  # far: 6 macro steps at full speed, never reached within one

    def high_rollout_fn(macro):  # [B, N, Hh, k*A] -> positions [B, N, Hh, 2], k primitive steps each
        return macro.reshape(*macro.shape[:3], k, 2).sum(dim=3).cumsum(dim=2) / k

    def high_cost_fn(z, macro):
        return (z[:, :, -1] - goal[:, None]).norm(dim=-1)

    planner = SubgoalSearch(CEM(samples=64, iterations=3, elites=8, seed=1), high_horizon=8, replan_every=4, lead=lead)
    subgoals = [planner.subgoal(high_rollout_fn, high_cost_fn, 1, low_bound, high_bound, k, decisions_left=40)
                for _ in range(4)]  # one high-level plan, then 3 decisions on it
    plan = planner._z[0]  # [Hh, 2], the plan's predicted positions after each macro step
    expected = [0, 0, 0, 0] if lead is None else [0, 1, 1, 1]  # lead 4: the first step ending >= 4 decisions on
    for (subgoal, arrived), step in zip(subgoals, expected, strict=True):
        assert torch.equal(subgoal[0], plan[step]) and not arrived.item()
    assert plan[1, 0] > plan[0, 0] > 0.3  # the plan heads for the goal, so a later step is further along
