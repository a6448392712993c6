"""The predictor refitted on frozen latents: it learns dynamics the probe grades, the refitted model
keeps the base encoder and records what it came from, agent.run plans with it and caches it, and
bad settings are refused in one line."""

import dataclasses
import json

import pytest
import torch
from conftest import TINY_MODEL

import world_model
from world_model.cache_key import cache_key
from world_model.checkpoint import read_manifest
from world_model.dataset import Dataset
from world_model.ensemble import latent_windows
from world_model.model import WorldModel, WorldModelConfig
from world_model.refit import (
    LinearProbe,
    RefitConfig,
    fit_predictor,
    for_model,
    hard_starts,
    held_out_errors,
    is_refit,
    refit_key,
    save_refit,
    train_refit,
)

D, A = 8, 2
MIX = torch.randn(A, D, generator=torch.Generator().manual_seed(3))


def linear_world(episodes: int, steps: int, seed: int):
    """z_{t+1} = z_t + a_t @ MIX: latents [E, T, D], actions [E, T, A], probe targets (the first two
    latent numbers) [E, T, 2]."""
    g = torch.Generator().manual_seed(seed)
    actions = torch.rand(episodes, steps, A, generator=g) * 2 - 1
    z = torch.cat([torch.zeros(episodes, 1, D), torch.cumsum(actions[:, :-1] @ MIX, dim=1)], dim=1)
    return z, actions, z[..., :2].clone()


def test_the_refit_learns_the_dynamics_with_and_without_the_probe_term():
    z, a, y = linear_world(80, 16, seed=0)
    zh, ah, _ = linear_world(20, 16, seed=1)
    copy_last = (zh[:, 2:5] - zh[:, 1:2]).square().mean().item()  # holding z_1 for 3 steps
    for weight, targets in ((1.0, y), (0.0, None)):
        cfg = RefitConfig(steps=300, width=32, depth=1, heads=2, rollout=3, probe_weight=weight, probe_rows=500,
                          warmup_steps=20)
        predictor = fit_predictor(z, a, targets, history=2, cfg=cfg, progress=False)
        errors = held_out_errors(predictor, zh, ah, history=2, rollout=3)
        assert len(errors) == 3 and max(errors) < 0.05 * copy_last, (weight, errors, copy_last)


def test_a_share_of_windows_from_extra_episodes_teaches_their_dynamics_from_a_fitted_start():
    # the planner's own episodes visit latents the video never shows (offset by 3) and move along other
    # directions there: a predictor fitted on the video alone is wrong there, and training it on with
    # half its windows from them mends it. Latent errors only: a probe fitted on the video's latents,
    # which span two directions, says nothing of latents off them.
    z, a, _ = linear_world(80, 16, seed=0)
    g = torch.Generator().manual_seed(4)
    other = torch.randn(A, D, generator=g)
    actions = torch.rand(60, 16, A, generator=g) * 2 - 1
    zx = 3 + torch.cat([torch.zeros(60, 1, D), torch.cumsum(actions[:, :-1] @ other, dim=1)], dim=1)
    zx_held, ax_held, zx, ax = zx[:10], actions[:10], zx[10:], actions[10:]
    cfg = RefitConfig(steps=300, width=32, depth=1, heads=2, rollout=3, probe_weight=0.0, warmup_steps=20)
    fitted = fit_predictor(z, a, None, history=2, cfg=cfg, progress=False)
    before = held_out_errors(fitted, zx_held, ax_held, history=2, rollout=3)[-1]
    tuned = fit_predictor(z, a, None, history=2, cfg=cfg, progress=False, extra=(zx, ax, None), extra_fraction=0.5,
                          init=fitted)
    after = held_out_errors(tuned, zx_held, ax_held, history=2, rollout=3)[-1]
    assert after < 0.1 * before, (before, after)
    # it went on from the fitted weights (a copy: those are left as they were) and still knows the video
    assert held_out_errors(fitted, zx_held, ax_held, history=2, rollout=3)[-1] == before
    zh, ah, _ = linear_world(20, 16, seed=1)
    copy_last = (zh[:, 2:5] - zh[:, 1:2]).square().mean().item()
    assert held_out_errors(tuned, zh, ah, history=2, rollout=3)[-1] < 0.05 * copy_last


def test_the_linear_probe_reads_targets_in_their_standard_deviations():
    z, _, y = linear_world(40, 16, seed=2)
    probe = LinearProbe(z.flatten(0, 1).double(), y.flatten(0, 1).double())
    assert probe.error(z, y).item() < 1e-4
    assert probe.error(z, y + y.flatten(0, 1).std(0)).item() == pytest.approx(1.0, abs=1e-2)  # one sd off each


def test_a_probe_term_without_probe_targets_is_refused():
    z, a, _ = linear_world(10, 16, seed=0)
    with pytest.raises(ValueError, match="refit.probe_weight=0"):
        fit_predictor(z, a, None, history=2, cfg=RefitConfig(steps=1, probe_weight=1.0), progress=False)


@pytest.mark.parametrize("bad", [{"steps": -1}, {"width": 30, "heads": 4}, {"lr": 0.0}, {"held_out_fraction": 1.0},
                                 {"rollout": 0}, {"hard_fraction": 0.5}, {"hard_fraction": 1.5, "hard_group": "angle"},
                                 {"hard_top": 0.0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match="refit"):
        RefitConfig(**bad)


def test_the_refitted_model_keeps_the_encoder_and_names_its_base(tiny_data, tmp_path):
    torch.manual_seed(0)
    ds = Dataset(tiny_data[2])
    base = WorldModel(WorldModelConfig(**TINY_MODEL, action_dim=ds.action_dim)).eval()
    world_model.save(tmp_path / "base", base, step=7, train_cfg={"dataset": str(tiny_data[2])})
    manifest = read_manifest(tmp_path / "base")
    cfg = RefitConfig(steps=5, width=16, depth=1, heads=2, rollout=2, batch_size=8, probe_rows=50)
    refitted, stats = train_refit(base, ds, cfg, torch.device("cpu"), progress=False)
    assert len(stats["held_out_error"]) == len(stats["held_out_error_before"]) == 2
    save_refit(tmp_path / "refit", refitted, manifest, cfg, stats)
    loaded, new = world_model.checkpoint.load_with_manifest(tmp_path / "refit")
    assert (loaded.cfg.predictor_width, loaded.cfg.predictor_depth) == (16, 1)
    for name, value in base.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[name], value), name
    assert new["step"] == 7 and is_refit(new) and not is_refit(manifest)
    assert new["train_config"]["refit"]["of"] == manifest["files"]["model.safetensors"]["sha256"]
    assert new["train_config"]["dataset"] == str(tiny_data[2])
    assert json.loads(json.dumps(new["train_config"]["refit"]["config"])) == {**cfg.__dict__}


def test_a_shared_model_is_not_refitted(tiny_data):
    ds = Dataset(tiny_data[2])
    config = WorldModelConfig(**{**TINY_MODEL, "action_dim": ds.action_dim + 2, "envs": ["reacher", "pusht"],
                                 "env_action_dims": [ds.action_dim, 2]})
    with pytest.raises(ValueError, match="refit.steps=0"):
        train_refit(WorldModel(config), ds, RefitConfig(steps=1), torch.device("cpu"), progress=False)


def test_hard_windows_are_those_where_the_group_changes_most_over_the_rollout():
    y = torch.zeros(3, 8, 3)
    y[..., :2] = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(0)) * 100  # other targets: ignored
    y[1, 6:, 2] = 5.0  # the group's one step, from frame 5 to frame 6 of episode 1
    # 5 windows of 2 + 2 frames per episode; window t's rollout steps are frames t + 1 -> t + 2 -> t + 3
    pairs = hard_starts(y, [2], history=2, rollout=2, top=2 / 15)
    assert sorted(map(tuple, pairs.tolist())) == [(1, 3), (1, 4)]


def test_latent_windows_drawn_from_given_starts_cut_those_windows():
    zy = torch.arange(2 * 9 * 3, dtype=torch.float32).reshape(2, 9, 3)
    a = torch.arange(2 * 9 * 2, dtype=torch.float32).reshape(2, 9, 2)
    start, actions, after = latent_windows(zy, a, 2, 3, torch.Generator().manual_seed(0), rollout=3,
                                           starts=torch.tensor([[1, 4]]))
    assert torch.equal(start, zy[1, 4:6].expand(3, -1, -1)) and torch.equal(after, zy[1, 6:9].expand(3, -1, -1))
    assert torch.equal(actions, a[1, 4:8].expand(3, -1, -1))  # K - 1 + R actions, from the window's first frame


def test_a_refit_with_hard_windows_still_learns_the_dynamics_and_names_its_group(tiny_data):
    z, a, y = linear_world(80, 16, seed=0)
    zh, ah, _ = linear_world(20, 16, seed=1)
    copy_last = (zh[:, 2:5] - zh[:, 1:2]).square().mean().item()
    cfg = RefitConfig(steps=300, width=32, depth=1, heads=2, rollout=3, probe_rows=500, warmup_steps=20,
                      hard_fraction=0.5, hard_group="x", hard_top=0.2)
    predictor = fit_predictor(z, a, y, history=2, cfg=cfg, progress=False, hard_columns=[0])
    assert max(held_out_errors(predictor, zh, ah, history=2, rollout=3)) < 0.05 * copy_last
    with pytest.raises(ValueError, match="refit.hard_fraction=0"):
        fit_predictor(z, a, y, history=2, cfg=cfg, progress=False)  # no columns: nothing to rank by
    ds = Dataset(tiny_data[2])
    base = WorldModel(WorldModelConfig(**TINY_MODEL, action_dim=ds.action_dim)).eval()
    with pytest.raises(ValueError, match="is not a probe group of env"):
        train_refit(base, ds, RefitConfig(steps=1, hard_fraction=0.5, hard_group="no-such-group"), torch.device("cpu"),
                    progress=False)


def test_a_refit_from_the_model_starts_at_its_predictor_in_its_shape(tiny_data):
    torch.manual_seed(0)
    ds = Dataset(tiny_data[2])
    base = WorldModel(WorldModelConfig(**TINY_MODEL, action_dim=ds.action_dim)).eval()
    common = dict(steps=1, rollout=2, batch_size=8, probe_rows=50, lr=1e-9)  # one step too small to move a weight far
    for from_model in (True, False):
        # the width set is not the model's: from the model, the model's shape wins
        cfg = RefitConfig(width=16, depth=1, heads=2, **common, from_model=from_model)
        refitted, _ = train_refit(base, ds, cfg, torch.device("cpu"), progress=False)
        shape = (refitted.cfg.predictor_width, refitted.cfg.predictor_depth, refitted.cfg.predictor_heads)
        own = (TINY_MODEL["predictor_width"], TINY_MODEL["predictor_depth"], TINY_MODEL["predictor_heads"])
        assert shape == (own if from_model else (16, 1, 2)), (from_model, shape)
        if from_model:
            gap = max((refitted.predictor.state_dict()[k] - v).abs().max().item()
                      for k, v in base.predictor.state_dict().items())
            assert gap < 1e-6, gap
    # the cache key of a refit that does not start from the model is the key it had before the setting existed
    cfg = RefitConfig(steps=5)
    before = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "from_model"}
    assert refit_key("0" * 64, "data", cfg) == cache_key({"weights": "0" * 64, "dataset": "data", "refit": before})
    assert refit_key("0" * 64, "data", dataclasses.replace(cfg, from_model=True)) != refit_key("0" * 64, "data", cfg)
    assert for_model(RefitConfig(steps=5, from_model=True), base.cfg).width == TINY_MODEL["predictor_width"]
