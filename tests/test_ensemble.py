"""The predictor ensemble learns one-step transitions, its disagreement is the members' distance from
the world model's rollout, it is high where the training video never went, and the configurator's
disagreement weight reaches the planner's cost."""

import pytest
import torch
from conftest import flip_last_byte

import envs
from agent.configurator import Configurator, TaskSettings
from agent.costs import aim, build_cost
from agent.goal_sources import needs
from world_model.checkpoint import CheckpointError
from world_model.ensemble import EnsembleConfig, fit_ensemble, load_ensemble, save_ensemble

D, A = 8, 2


def linear_world(episodes: int, steps: int, seed: int, dims: int = A):
    """z_{t+1} = z_t + a_t @ MIX, actions uniform in [-1, 1] on the first `dims` action numbers
    (the others always 0): latents [E, T, D], actions [E, T, A]."""
    g = torch.Generator().manual_seed(seed)
    actions = torch.zeros(episodes, steps, A)
    actions[..., :dims] = torch.rand(episodes, steps, dims, generator=g) * 2 - 1
    z = torch.cat([torch.zeros(episodes, 1, D), torch.cumsum(actions[:, :-1] @ MIX, dim=1)], dim=1)
    return z, actions


MIX = torch.randn(A, D, generator=torch.Generator().manual_seed(7))
CFG = EnsembleConfig(members=3, width=32, depth=1, steps=300, batch_size=128)


@pytest.fixture(scope="module")
def seen_one_action_dim():
    """An ensemble fitted on video in which only the first action number ever varied."""
    z, actions = linear_world(60, 20, seed=0, dims=1)
    return fit_ensemble(z[:50], actions[:50], z[50:], actions[50:], history=2, cfg=CFG, progress=False)


def truth(start: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The linear world's rollout: start [B, K, D], actions [B, N, H, A] -> [B, N, H, D]."""
    return start[:, None, None, -1] + torch.cumsum(actions @ MIX, dim=2)


def test_members_learn_one_step_transitions_differ_and_round_trip(tmp_path, seen_one_action_dim):
    model, stats = seen_one_action_dim
    assert len(stats["held_out_error"]) == CFG.members
    assert max(stats["held_out_error"]) < 0.1 * stats["held_out_copy_last"]  # far better than copying
    start, past = torch.zeros(4, 2, D), torch.zeros(4, 1, A)
    plans = torch.rand(4, 5, 3, A) * 2 - 1
    own = model.rollouts(start, past, plans)  # [M, B, N, H, D]
    assert own.shape == (CFG.members, 4, 5, 3, D)
    assert not torch.equal(own[0], own[1])  # own initialisation and data order: not one predictor copied
    save_ensemble(tmp_path / "e", model, stats)
    again = load_ensemble(tmp_path / "e")
    assert torch.equal(again.rollouts(start, past, plans), own)
    flip_last_byte(tmp_path / "e" / "ensemble.safetensors")
    with pytest.raises(CheckpointError, match="sha256"):
        load_ensemble(tmp_path / "e")


def test_disagreement_is_the_members_mean_squared_distance_from_the_plan(seen_one_action_dim):
    model, _ = seen_one_action_dim
    start, past = torch.randn(3, 2, D), torch.zeros(3, 1, A)
    plans = torch.rand(3, 4, 5, A) * 2 - 1
    with torch.no_grad():
        own = model.rollouts(start, past, plans)
        centre = own.mean(0)  # [B, N, H, D]
        spread = model.disagreement(start, past, centre, plans)
        assert spread.shape == (3, 4, 5)
        assert torch.allclose(spread, own.var(0, unbiased=False).mean(-1), atol=1e-6)
        shifted = model.disagreement(start, past, centre + 0.5, plans)  # a model 0.5 off in every number
        assert torch.allclose(shifted, spread + 0.25, atol=1e-5)


def test_disagreement_is_high_where_the_video_never_went(seen_one_action_dim):
    """Plans that use the action number the video never varied: the members have not learnt what it
    does, so they land far from the true outcome; plans like the video's, close to it."""
    model, _ = seen_one_action_dim
    start, past = torch.zeros(16, 2, D), torch.zeros(16, 1, A)
    seen = torch.zeros(16, 8, 5, A)
    seen[..., 0] = torch.rand(16, 8, 5) * 2 - 1
    unseen = seen.clone()
    unseen[..., 1] = torch.rand(16, 8, 5) * 2 - 1
    with torch.no_grad():
        familiar = model.disagreement(start, past, truth(start, seen), seen)
        novel = model.disagreement(start, past, truth(start, unseen), unseen)
    assert novel.mean() > 5 * familiar.mean()
    assert (novel.mean(-1) > familiar.mean(-1)).float().mean() > 0.9  # plan by plan, not only on average


def test_the_disagreement_weight_reaches_the_cost_and_asks_for_the_ensemble(seen_one_action_dim):
    model, _ = seen_one_action_dim
    env = envs.make("reacher", image_size=16)
    settings = {kind: TaskSettings() for kind in env.goal_kinds}
    env.close()
    plain = Configurator(settings, env).setup("state")
    assert "ensemble" not in needs(plain, {"name": "cem"}) and plain.cost_weights["disagreement"] == 0.0
    settings["state"] = TaskSettings(disagreement_weight=2.0)
    risky = Configurator(settings, env).setup("state")
    assert "ensemble" in needs(risky, {"name": "cem"})
    with pytest.raises(ValueError, match="disagreement_weight=0"):
        build_cost(risky.cost_weights, risky.goal_energy)  # a weight without an ensemble: one line
    cost = build_cost({**risky.cost_weights, "action_magnitude": 0.0}, {"metric": "l2"}, ensemble=model)
    start, past = torch.zeros(2, 2, D), torch.zeros(2, 1, A)
    plans = torch.zeros(2, 3, 4, A)
    plans[:, 1, :, 1] = 1.0  # plan 1 pushes the number the video never moved
    z, goal = truth(start, plans), torch.zeros(2, D)
    with torch.no_grad():
        terms = cost.breakdown(z, plans, goal, (start, past))
        total = aim(cost, goal, (start, past))(z, plans)
    assert set(terms) == {"goal", "disagreement"}
    assert torch.allclose(total, terms["goal"] + terms["disagreement"])
    assert torch.allclose(terms["disagreement"], 2.0 * model.disagreement(start, past, z, plans).mean(-1))
    assert (terms["disagreement"][:, 1] > terms["disagreement"][:, 0]).all()
    with pytest.raises(ValueError, match="start"):
        aim(cost, goal)(z, plans)  # the plans' start is what the members roll out from
