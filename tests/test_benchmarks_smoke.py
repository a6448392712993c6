"""The profiling scripts of benchmarks/ run on a tiny dataset and account for the time they measure."""

import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]

COMMON = {"data.sample", "data.to_device", "data.frames_to_float", "encoder.stem[0]", "encoder.stem[1]",
          "encoder.block.attention", "encoder.block.mlp", "encoder.block.rest", "encoder.head",
          "predictor.teacher_forced", "predictor.rollout", "loss.motion", "loss.inverse_dynamics_head",
          "loss.prediction_and_rest", "step.checks", "optimizer.zero_grad", "backward", "optimizer.clip_grad_norm",
          "optimizer.step"}  # 32 px frames: two stem stages


def script(name: str, monkeypatch):
    """benchmarks/<name>.py as a module (its sibling modules importable, as when it runs as a script)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("loss, parts", [
    # the reacher's schedule (configs/schedule/reacher.yaml) turns the probe term on: its head is a part
    ([], {"loss.vicreg_variance", "loss.vicreg_covariance", "loss.probe_head"}),
    (["loss=barlow", "loss.ema_target=true", "loss.probe_weight=0"], {"loss.barlow", "target_encoder",
                                                                      "optimizer.ema_update"}),
])
def test_train_profile_parts_add_up_to_the_step(tiny_data, monkeypatch, capsys, loss, parts):
    from world_model import losses

    originals = {fn: getattr(losses, fn) for fn in ("vicreg_variance", "vicreg_covariance", "barlow_twins",
                                                     "motion_spread")}
    record = script("train_profile", monkeypatch).main([
        "--dataset", str(tiny_data[2]), "--steps", "2", "--warmup", "1", "--ops-steps", "1", "optim.batch_size=4",
        "loss.inverse_dynamics_hidden=16", "world_model.token_dim=4", *loss,
        *(f"world_model.{k}={v}" for k, v in TINY_MODEL.items())])
    assert set(record["parts_s"]) == COMMON | parts  # every part of the step timed, no other
    assert all(v > 0 for v in record["parts_s"].values()), record["parts_s"]
    # the parts are timed inside the step, the step from outside: they must cover it, once
    assert abs(sum(record["parts_s"].values()) - record["step_s"]) <= 0.2 * record["step_s"], record
    # the backward split: every backward node traced to a forward part, within the backward part's time
    backward = record["backward_parts_s"]
    assert "backward.unmapped" not in backward, backward
    assert backward["backward.engine_and_rest"] >= 0
    assert {"encoder.stem[0]", "encoder.block.mlp", "predictor.rollout", "predictor.teacher_forced",
            "loss.inverse_dynamics_head"} <= {k for k, v in backward.items() if v > 0}, backward
    assert "target_encoder" not in backward  # it runs without gradients
    assert sum(backward.values()) == pytest.approx(record["parts_s"]["backward"])
    assert len(record["ops"]) == 15 and 0 < sum(op["share"] for op in record["ops"]) <= 1
    assert not {op["op"] for op in record["ops"]} & set(record["parts_s"])  # parts are not operators
    assert {getattr(losses, fn) for fn in originals} == set(originals.values())  # the wrappers are gone
    out = capsys.readouterr().out
    for name in record["parts_s"]:
        assert f"\n{name} " in out


def test_plan_profile_splits_a_decision_and_lists_its_operators(tmp_path, monkeypatch, capsys):
    import torch

    import world_model
    from world_model.model import WorldModel, WorldModelConfig

    torch.manual_seed(0)
    world_model.save(tmp_path / "ckpt", WorldModel(WorldModelConfig(**TINY_MODEL, action_dim=2)), step=0)
    record = script("plan_profile", monkeypatch).main([str(tmp_path / "ckpt"), "--episodes", "2", "--horizon", "2",
                                                        "--repeats", "1", "--ops"])
    assert set(record["ms"]) == {"encode", "rollout", "cost", "planner_own"}
    assert record["ms"]["rollout"] > 0 and record["ms"]["encode"] > 0
    assert record["ms_total"] == pytest.approx(sum(record["ms"].values()), abs=0.2)
    assert len(record["ops"]) == 15 and any(op["op"] == "aten::addmm" for op in record["ops"])  # the predictor's layers
    assert "self ms/decision" in capsys.readouterr().out


def test_plan_latency_times_the_policys_rollout_for_one_and_fifty_episodes(tmp_path, monkeypatch, capsys):
    """One JSON line per batch size, each a positive median; the CEM it times calls the candidate
    rollout the planning policy calls (a wrong shape there would raise)."""
    import json

    import torch

    import world_model
    from world_model.model import WorldModel, WorldModelConfig

    torch.manual_seed(0)
    world_model.save(tmp_path / "ckpt", WorldModel(WorldModelConfig(**TINY_MODEL, action_dim=2)), step=0)
    script("plan_latency", monkeypatch).main([str(tmp_path / "ckpt"), "--samples", "8", "--iterations", "2",
                                             "--horizon", "2", "--repeats", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["episodes"] for line in lines] == [1, 50]
    assert all(line["ms_per_decision_median"] > 0 and line["compile"] is False for line in lines)


def test_pusht_oracle_plays_candidates_as_the_env_steps_and_scores_in_tolerances(monkeypatch):
    import math

    import numpy as np
    import torch

    from envs.pusht.env import PushTEnv
    from envs.pusht.replay import make_sim, pose

    oracle = script("pusht_oracle", monkeypatch)
    env = PushTEnv()
    env.reset(seed=3)
    start = env.get_sim_state()
    actions = torch.rand(1, 2, 3, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1  # [1, N, H, 2]
    poses = oracle.simulate(make_sim(), start, env.action_repeat, actions)  # [1, N, H, 5]
    for n in range(2):
        env.set_sim_state(start)
        for h in range(3):
            env.step(actions[0, n, h].numpy())
            assert np.array_equal(poses[0, n, h].numpy(), pose(env.sim))
    assert not torch.equal(poses[0, 0], poses[0, 1])
    goal = np.array([100.0, 200.0, 300.0, 250.0, 0.5])
    moved = torch.from_numpy(np.stack([goal, goal + [0, 0, 20, 0, 0], goal + [0, 0, 0, 0, math.pi / 9],
                                        goal + [0, 0, 0, 0, 2 * math.pi]]))[None]  # [1, 4, 5]
    assert torch.allclose(oracle.state_cost(moved, goal), torch.tensor([[0.0, 1.0, 1.0, 0.0]], dtype=torch.float64),
                          atol=1e-9)


def test_a_model_of_its_own_as_the_other_member_disagrees_with_itself_by_nothing(tiny_data, tmp_path, monkeypatch):
    """benchmarks/disagreement.py --others: the affine map of a model's latents onto themselves explains
    them (R^2 1) and its mapped rollout is the model's own (spread 0); an independently initialised
    model's is not."""
    import numpy as np
    import torch

    import world_model
    from world_model.dataset import Dataset
    from world_model.latents import EpisodeLatents, episode_actions
    from world_model.model import WorldModel, WorldModelConfig

    others_spread = script("disagreement", monkeypatch).others_spread
    for seed in (0, 1):
        torch.manual_seed(seed)
        # a pooled 16-number latent: the map's 17 unknowns per number are fitted on 4 episodes' 52 frames
        config = WorldModelConfig(**TINY_MODEL, action_dim=2, representation="pooled")
        world_model.save(tmp_path / f"m{seed}", WorldModel(config), step=0)
    ds = Dataset(tiny_data[2])
    wm = world_model.load(tmp_path / "m0").eval()
    latents, held, k = EpisodeLatents(wm, ds, torch.device("cpu")), np.array([4, 5]), wm.cfg.history
    e, t = np.array([0, 1, 1]), np.array([0, 3, 5])
    span = t[:, None] + np.arange(k + 2)  # [W, K + H]
    z = latents(held)[torch.as_tensor(e)[:, None], torch.as_tensor(span)]
    acts = episode_actions(ds, held, torch.device("cpu"))[torch.as_tensor(e)[:, None], torch.as_tensor(span[:, :-1])]
    with torch.no_grad():
        pred = wm.rollout(z[:, :k], acts[:, k - 1 :], past_actions=acts[:, : k - 1])  # [W, H, D]
    same = others_spread([str(tmp_path / "m0")], ds, "reacher", latents, held, e, span, acts, k, pred, z,
                         map_episodes=4, held_out_fraction=0.3, device=torch.device("cpu"))
    assert same["map_r2"][0] == pytest.approx(1.0, abs=1e-3) and same["spread"].shape == (3, 2)
    assert np.abs(same["spread"]).max() < 1e-6
    other = others_spread([str(tmp_path / "m1")], ds, "reacher", latents, held, e, span, acts, k, pred, z,
                          map_episodes=4, held_out_fraction=0.3, device=torch.device("cpu"))
    assert other["spread"].min() > 1e-6


def test_refits_of_one_encoder_are_members_and_others_are_refused(tmp_path, monkeypatch):
    """benchmarks/disagreement.py --refits: other refits of the checkpoint's base weights give their
    predictors' rollouts as the members'; a checkpoint that is no refit, or a refit of other weights, is
    refused in one line."""
    import torch

    import world_model
    from world_model.checkpoint import read_manifest
    from world_model.model import WorldModel, WorldModelConfig
    from world_model.refit import RefitConfig, save_refit

    bench = script("disagreement", monkeypatch)
    config = WorldModelConfig(**TINY_MODEL, action_dim=2)
    for name, seed in (("base", 0), ("other_base", 1)):
        torch.manual_seed(seed)
        world_model.save(tmp_path / name, WorldModel(config), step=3)
    for name, base, seed in (("r0", "base", 2), ("r1", "base", 3), ("foreign", "other_base", 4)):
        torch.manual_seed(seed)
        save_refit(tmp_path / name, WorldModel(config), read_manifest(tmp_path / base), RefitConfig(steps=1), {})
    members = bench.refit_members(str(tmp_path / "r0"), read_manifest(tmp_path / "r0"), [str(tmp_path / "r1")])
    predictor = world_model.load(tmp_path / "r1").eval().predictor
    g = torch.Generator().manual_seed(0)
    start = torch.randn(2, config.history, predictor.dim, generator=g)  # [B, K, D]
    past = torch.randn(2, config.history - 1, 2, generator=g)  # [B, K - 1, A]
    actions = torch.rand(2, 3, 4, 2, generator=g) * 2 - 1  # [B, N, H, A]
    with torch.no_grad():
        rolled, own = members.rollouts(start, past, actions), predictor.rollout_candidates(start, past, actions)
    assert rolled.shape == (1, 2, 3, 4, predictor.dim) and torch.allclose(rolled[0], own)
    with pytest.raises(SystemExit, match="not a refit"):
        bench.refit_members(str(tmp_path / "base"), read_manifest(tmp_path / "base"), [str(tmp_path / "r1")])
    with pytest.raises(SystemExit, match="not a refit of the same base weights"):
        bench.refit_members(str(tmp_path / "r0"), read_manifest(tmp_path / "r0"), [str(tmp_path / "foreign")])


def test_model_gain_reads_no_motion_off_a_model_that_predicts_none(tmp_path, monkeypatch):
    """benchmarks/model_gain.py on four short reacher episodes (two fit the probe map: 12 rows, enough for its
    5-fold choice of strength): a model whose rollout repeats the last
    frame's latent predicts no change, so every probe target's slope is 0 (its correlation and true-on-predicted slope None);
    the same model's own rollout gives a finite slope per target."""
    import argparse
    import json

    import numpy as np
    import torch

    import envs
    from agent.episode_record import make_record
    from world_model.model import WorldModel, WorldModelConfig

    env = envs.make("reacher", image_size=32)
    rng = np.random.default_rng(0)
    with open(tmp_path / "records.jsonl", "w") as out:
        for seed in range(4):
            spec = env.sample_episode("state", rng)
            env.reset(seed=spec.seed, options=spec.options)
            actions = rng.uniform(-1, 1, (6, 2))
            for action in actions:
                env.step(action)
            out.write(json.dumps(make_record(spec, env, actions, np.zeros(6), "planner", 0.0)) + "\n")
    env.close()

    class CopyLast(WorldModel):
        def rollout(self, z_hist, actions, past_actions=None):
            return z_hist[:, -1:].expand(-1, actions.shape[1], -1)

    torch.manual_seed(0)
    module = script("model_gain", monkeypatch)
    args = argparse.Namespace(checkpoint="tiny", records=[str(tmp_path / "records.jsonl")], late=2)
    with torch.no_grad():
        still = module.gain_report(CopyLast(WorldModelConfig(**TINY_MODEL, action_dim=2)).eval(), args, 0.0)
        moving = module.gain_report(WorldModel(WorldModelConfig(**TINY_MODEL, action_dim=2)).eval(), args, 0.0)
    names = ["sin_shoulder", "cos_shoulder", "sin_wrist", "cos_wrist", "tip_x", "tip_y"]
    assert still["episodes_scored"] == 2 and set(still["all"]) == set(still["late"]) == set(names)
    assert all(v["slope"] == 0 and v["corr"] is None and v["true_on_predicted"] is None for v in still["all"].values())
    assert all(np.isfinite(v["slope"]) and v["median_true_change"] > 0 for v in moving["all"].values())


def test_model_gain_tells_a_biased_model_from_an_uncertain_one(monkeypatch):
    """gain_stats on synthetic changes: a model predicting half of every true move reads slope 0.5 and
    true-on-predicted 2 (correlation 1); a model predicting the mean of what follows from what it
    sees (the truth = what it sees + unseen noise of equal variance) reads true-on-predicted about 1 and
    slope about corr^2 = 0.5: the two look alike by `slope` alone."""
    import numpy as np

    module = script("model_gain", monkeypatch)
    rng = np.random.default_rng(0)
    seen = rng.normal(size=(20000, 1))
    truth = seen + rng.normal(size=(20000, 1))
    biased = module.gain_stats(truth, 0.5 * truth, ["x"])["x"]
    assert biased["slope"] == 0.5 and biased["true_on_predicted"] == 2.0 and biased["corr"] == 1.0
    uncertain = module.gain_stats(truth, seen, ["x"])["x"]
    assert abs(uncertain["true_on_predicted"] - 1) < 0.03 and abs(uncertain["slope"] - 0.5) < 0.03
    assert abs(uncertain["slope"] - uncertain["corr"] ** 2) < 0.03
