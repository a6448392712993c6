"""A world model shared by several envs: trained on two envs' datasets at once (reacher, 2-d actions;
the dot env of test_fake_env, 3-d actions), its batches carry padded actions and the env's one-hot
code in the mixing weights' proportions, it plans in one env through that env's view and refuses
another, and a single dataset's run keeps its identity."""

import dataclasses
import hashlib
import json
import re
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL
from hydra import compose, initialize_config_dir
from test_fake_env import DotEnv, replay
from test_run_checks import dot_cfg
from test_train import tiny_train_config

import agent.run as run_module
import envs
import world_model
from planners.cem import CEM
from world_model.action_code import encode_actions
from world_model.cli import SettingError
from world_model.dataset import Dataset, DatasetError
from world_model.losses import LossConfig
from world_model.mixture import MixtureSampler, mixing_weights
from world_model.model import SHARED_FIELDS, WorldModel, WorldModelConfig
from world_model.train import run_dir, run_identity, train
from world_model.windows import WindowSampler, split_episodes

DOT = types.SimpleNamespace(replay=replay)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def dot_family(monkeypatch):
    monkeypatch.setitem(envs.REGISTRY, "dot", (DotEnv, {}, DOT))


def collect_dot(folder: Path, image_size: int, episodes: int = 6, steps: int = 12) -> Path:
    from agent.collect import DataConfig, collect

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(envs.REGISTRY, "dot", (DotEnv, {}, DOT))
        data = DataConfig(episodes=episodes, steps=steps, episodes_per_shard=3, workers=1, out=str(folder))
        return collect({"name": "dot", "image_size": image_size}, data, progress=False)


def cached_config(tiny_data, cache: Path, **overrides):
    """test_train's tiny TrainConfig with its run folder under cache/models (named by its identity)."""
    return replace(tiny_train_config(tiny_data, cache, **overrides), out=None, cache_root=str(cache))


@pytest.fixture(scope="module")
def dot_data(tmp_path_factory):
    """A 6-episode, 32 px dataset of the dot env (3-d actions), the reacher's tiny_data's size."""
    return collect_dot(tmp_path_factory.mktemp("dot") / "data", 32)


@pytest.fixture(scope="module")
def shared(tiny_data, dot_data, tmp_path_factory):
    """A shared model trained 4 steps on [reacher, dot] with weights 3:1: its run folder."""
    out = tmp_path_factory.mktemp("shared")
    cfg = cached_config(tiny_data, out, steps=4, monitor_every=4, checkpoint_every=4, dataset_weights=[3.0, 1.0])
    return train(cfg, [tiny_data[2], dot_data], progress=False), cfg


def test_a_shared_model_trains_on_two_envs_and_its_checkpoint_records_them(shared, tiny_data, dot_data):
    folder, cfg = shared
    assert folder.name.startswith("reacher+dot-") and folder.parent == Path(cfg.cache_root) / "models"
    wm = world_model.load(folder / "latest")
    assert wm.cfg.envs == ["reacher", "dot"] and wm.cfg.env_action_dims == [2, 3]
    assert wm.cfg.action_dim == 3 + 2  # the widest action, then one code per env
    assert wm.predictor.action[0].in_features == 5  # the predictor's own action MLP takes the coded actions
    train_config = world_model.read_manifest(folder / "latest")["train_config"]
    assert train_config["dataset"] == [str(tiny_data[2].resolve()), str(dot_data.resolve())]
    assert [d["env"]["name"] for d in train_config["identity"]["data"]] == ["reacher", "dot"]
    assert train_config["identity"]["dataset_weights"] == [0.75, 0.25]
    # the monitors and the probe ran per env, each with its own probe targets; held_loss weighs them
    final = json.loads((folder / "summary.json").read_text())["final"]
    for key in ("reacher/held_loss", "reacher/rollout_err_1", "reacher/probe_r2_joints", "dot/held_loss",
                "dot/effective_rank", "dot/probe_r2_position"):
        assert key in final, key
    assert "dot/probe_r2_joints" not in final and "reacher/probe_r2_position" not in final
    assert final["held_loss"] == pytest.approx(0.75 * final["reacher/held_loss"] + 0.25 * final["dot/held_loss"])
    # the same config finds the trained run; other weights are another run
    assert run_dir(cfg, [tiny_data[2], dot_data]) == folder
    assert run_dir(replace(cfg, dataset_weights=None), [tiny_data[2], dot_data]) != folder


def test_actions_are_padded_to_the_widest_and_coded_by_env():
    two = torch.tensor([[0.5, -0.25]])  # env 0's own 2-d action
    three = torch.tensor([[0.125, 0.25, 0.75]])  # env 1's own 3-d action (exact in float32)
    assert encode_actions(two, 0, [2, 3]).tolist() == [[0.5, -0.25, 0.0, 1.0, 0.0]]
    assert encode_actions(three, 1, [2, 3]).tolist() == [[0.125, 0.25, 0.75, 0.0, 1.0]]
    with pytest.raises(ValueError, match=r"actions must be \[\.\.\., 2\]"):
        encode_actions(three, 0, [2, 3])


def samplers(tiny_data, dot_data, length: int = 4) -> list[WindowSampler]:
    out = []
    for root in (tiny_data[2], dot_data):
        ds = Dataset(root)
        out.append(WindowSampler(ds, split_episodes(ds.num_episodes, 0.34)[0], length))
    return out


def test_batches_carry_each_envs_actions_padded_and_its_code(tiny_data, dot_data):
    reacher, dot = samplers(tiny_data, dot_data)
    batch = MixtureSampler([reacher, dot], [0.5, 0.5], [2, 3]).sample(64, torch.Generator().manual_seed(0))
    assert batch["frames"].shape == (64, 4, 32, 32, 3) and batch["actions"].shape == (64, 3, 5)
    env = batch["env"]
    assert 0 < int(env.sum()) < 64  # both envs in the batch
    actions = batch["actions"]
    assert torch.equal(actions[env == 0][..., 3:], torch.tensor([1.0, 0.0]).expand_as(actions[env == 0][..., 3:]))
    assert torch.equal(actions[env == 1][..., 3:], torch.tensor([0.0, 1.0]).expand_as(actions[env == 1][..., 3:]))
    assert torch.all(actions[env == 0][..., 2] == 0)  # the reacher's actions padded with a zero
    assert torch.any(actions[env == 1][..., 2] != 0)  # the dot's third number is its own
    # each clip's own actions are its dataset's: find the reacher clips' windows among the reacher's
    windows = reacher.gather(np.arange(len(reacher)))
    for clip, frames in zip(actions[env == 0][..., :2], batch["frames"][env == 0]):
        match = (windows["frames"] == frames).flatten(1).all(1)
        assert match.any() and torch.equal(windows["actions"][match][0], clip)


@pytest.mark.parametrize("weights", [[0.8, 0.2], [1.0, 1.0]])
def test_the_mixing_weights_are_honoured(tiny_data, dot_data, weights):
    share = mixing_weights(weights, 2)[0]
    sampler = MixtureSampler(samplers(tiny_data, dot_data), mixing_weights(weights, 2), [2, 3])
    env = sampler.sample(2000, torch.Generator().manual_seed(1))["env"]
    # binomial standard deviation at most 0.011 for 2000 draws: 0.035 is over 3 of them
    assert abs((env == 0).float().mean().item() - share) < 0.035


@pytest.mark.parametrize("weights, count, line", [
    ([1.0], 2, r"dataset_weights=\[1.0\]: give one finite weight above 0 per dataset \(2 datasets\)"),
    ([1.0, 0.0], 2, r"dataset_weights=\[1.0, 0.0\]: give one finite weight above 0 per dataset"),
    ([1.0, float("nan")], 2, r"dataset_weights=\[1.0, nan\]: give one finite weight above 0 per dataset"),
    ([1.0], 1, r"dataset_weights=\[1.0\] but one dataset is given"),
])
def test_bad_mixing_weights_are_one_line(weights, count, line):
    with pytest.raises(SettingError, match=f"^{line}"):
        mixing_weights(weights, count)


def test_a_shared_model_refuses_the_probe_term(tiny_data, dot_data, tmp_path):
    cfg = cached_config(tiny_data, tmp_path / "cache", loss=LossConfig(inverse_dynamics_hidden=16, probe_weight=1.0))
    with pytest.raises(ValueError, match=r"^loss.probe_weight > 0 is for a single dataset .* train the shared model "
                                         r"with loss.probe_weight=0$"):
        train(cfg, [tiny_data[2], dot_data], progress=False)


def test_datasets_of_other_frame_sizes_or_one_env_twice_are_refused(tiny_data, tmp_path):
    big = collect_dot(tmp_path / "dot64", 64, episodes=2, steps=4)
    cfg = cached_config(tiny_data, tmp_path / "cache")
    with pytest.raises(DatasetError, match=rf"^the datasets of a shared world model must have one frame size, but "
                                           rf"{tiny_data[2]} \(reacher\) has 32 px, {big} \(dot\) has 64 px; collect "
                                           r"them at one size \(`python -m agent.collect env=<name> env.image_size=N`\)$"):
        train(cfg, [tiny_data[2], big], progress=False)
    with pytest.raises(DatasetError, match="hold env reacher more than once; a shared world model takes one dataset "
                                           "per env"):
        train(cfg, [tiny_data[2], tiny_data[2]], progress=False)
    assert not (tmp_path / "cache").exists()  # refused before anything was written


def test_a_single_datasets_run_keeps_its_identity_and_folder_name(tiny_data, tmp_path):
    cfg = cached_config(tiny_data, tmp_path)
    data = json.loads((tiny_data[2] / "manifest.json").read_text())["identity"]
    # the identity as it was written before shared models and the probe terms: no mixing weights, no
    # shared-model fields, no unset probe weights
    loss = {k: v for k, v in dataclasses.asdict(cfg.loss).items() if k not in ("probe_weight", "probe_rollout_weight")}
    before = {"data": data, "world_model": {k: v for k, v in dataclasses.asdict(cfg.world_model).items()
                                            if k not in SHARED_FIELDS},
              "loss": loss, "optim": dataclasses.asdict(cfg.optim), "steps": cfg.steps,
              "seed": cfg.seed, "held_out_fraction": cfg.held_out_fraction}
    assert run_identity(cfg, data) == before
    key = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:10]
    assert run_dir(cfg, tiny_data[2]) == tmp_path / "models" / f"reacher-{key}"
    assert run_dir(cfg, [tiny_data[2]]) == run_dir(cfg, tiny_data[2])  # a list of one is the same run
    # a single-env checkpoint's manifest holds no shared-model field either
    wm = WorldModel(WorldModelConfig(**TINY_MODEL, action_dim=2))
    world_model.save(tmp_path / "ckpt", wm, step=0)
    assert not set(SHARED_FIELDS) & set(world_model.read_manifest(tmp_path / "ckpt")["model_config"])
    assert wm.for_env("reacher") is wm  # a single-env model's view is the model itself


def test_the_env_view_plans_in_its_envs_own_actions_and_a_foreign_env_is_refused(shared):
    wm = world_model.load(shared[0] / "latest")
    with pytest.raises(ValueError, match=r"^this shared world model was trained on envs reacher, dot, not pusht; "
                                         r"pass one of them, or train a model on pusht's video too$"):
        wm.for_env("pusht")
    view = wm.for_env("dot")
    assert view.cfg.action_dim == 3 and view.cfg.envs is None and view.cfg.latent_dim == wm.cfg.latent_dim
    frames = torch.randint(0, 255, (2, 2, 32, 32, 3), dtype=torch.uint8)
    z_hist = view.encode(frames)  # [B, K, D]
    actions = torch.rand(2, 4, 3, 3) - 0.5  # [B, N, H, A_dot]
    past = torch.rand(2, 1, 3) - 0.5
    # the view is the shared model on the coded actions, and the code matters (an env embedding)
    coded = view.rollout_candidates(z_hist, actions, past_actions=past)
    assert torch.equal(coded, wm.rollout_candidates(z_hist, encode_actions(actions, 1, [2, 3]),
                                                    past_actions=encode_actions(past, 1, [2, 3])))
    as_reacher = wm.rollout_candidates(z_hist, encode_actions(actions[..., :2], 0, [2, 3]),
                                       past_actions=encode_actions(past[..., :2], 0, [2, 3]))
    with_third = view.rollout_candidates(z_hist, torch.cat([actions[..., :2], torch.zeros(2, 4, 3, 1)], -1),
                                         past_actions=torch.cat([past[..., :2], torch.zeros(2, 1, 1)], -1))
    assert not torch.allclose(as_reacher, with_third)  # same numbers, other env code: other predictions
    with pytest.raises(ValueError, match=r"actions must end in env dot's own action size 3"):
        view.rollout_candidates(z_hist, actions[..., :2])
    # a CEM plan through the view: actions of the dot's size, within its bounds
    z_goal = view.encode(frames[:, :1])[:, 0]  # [B, D]
    low, high = torch.full((3,), -0.5), torch.full((3,), 0.5)
    planner = CEM(horizon=3, samples=8, iterations=2, elites=2, seed=0)
    result = planner.plan(lambda a: view.rollout_candidates(z_hist, a, past_actions=past),
                          lambda z, a: view.energy(z[:, :, -1], z_goal[:, None]), torch.zeros(2, 3, 3), low, high)
    assert result.actions.shape == (2, 3, 3) and torch.all(result.actions.abs() <= 0.5)
    assert torch.all(torch.isfinite(result.cost))


def test_agent_run_plans_in_one_env_of_a_shared_model_on_that_envs_dataset(shared, tmp_path):
    checkpoint = shared[0] / "latest"
    cache = tmp_path / "cache"
    cfg = dot_cfg(cache, "stage=eval", f"checkpoint={checkpoint}", "critic.steps=5", "critic.batch_size=16",
                  "planner.samples=8", "planner.iterations=2", "eval.baselines=[]")
    out = tmp_path / "out"
    out.mkdir()
    run_module.run(cfg, out)
    summary = json.loads((out / "summary.json").read_text())
    assert [r["policy"] for r in summary["rows"]] == ["planner"] and summary["replay_failures"] == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert all(len(step) == 3 for r in records for step in r["actions"])  # the dot's own 3-d actions
    # the critic was fitted on the dot's own dataset, the one of the shared model's two it trained on
    assert summary["dataset"] == world_model.read_manifest(checkpoint)["train_config"]["dataset"][1]
    assert {p.name.split("-")[0] for p in (cache / "critics").iterdir()} == {"dot"}
    # an env the shared model was not trained on: one line, before anything is fitted
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("run", overrides=[f"cache_root={cache}", "env=two-rooms", "env.image_size=32", "stage=eval",
                                        f"checkpoint={checkpoint}", "eval.episodes=1", "eval.videos=0"])
    with pytest.raises(ValueError, match=rf"^checkpoint {re.escape(str(checkpoint))} is a world model shared by envs dot, reacher, not "
                                         r"two-rooms; pass env=<one of them>, or a checkpoint trained on two-rooms$"):
        run_module.run(cfg, tmp_path / "out2")


def test_the_train_command_takes_a_list_of_datasets_and_their_weights():
    from hydra.core.config_store import ConfigStore

    from world_model.mixture import dataset_roots
    from world_model.train import TrainConfig

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["dataset=[/data/a,/data/b]", "dataset_weights=[2,1]"])
        one = compose("train", overrides=["dataset=/data/a"])
    assert dataset_roots(cfg.dataset) == [Path("/data/a"), Path("/data/b")]
    assert mixing_weights(cfg.dataset_weights, 2) == pytest.approx([2 / 3, 1 / 3])
    assert dataset_roots(one.dataset) == [Path("/data/a")] and one.dataset_weights is None


def test_an_interrupted_shared_run_resumes_to_the_uninterrupted_ones_weights(tiny_data, dot_data, tmp_path, monkeypatch):
    roots = [tiny_data[2], dot_data]
    cfg = cached_config(tiny_data, tmp_path / "whole", steps=4, monitor_every=2, checkpoint_every=2)
    whole = train(cfg, roots, progress=False)
    real = MixtureSampler.sample
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # after the step-2 checkpoint and one more step that is lost
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MixtureSampler, "sample", interrupted)
    cut = replace(cfg, cache_root=str(tmp_path / "cut"))
    with pytest.raises(KeyboardInterrupt):
        train(cut, roots, progress=False)
    monkeypatch.setattr(MixtureSampler, "sample", real)
    resumed = train(replace(cut, resume=True), roots, progress=False)
    a, b = (world_model.load(f / "latest").state_dict() for f in (whole, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_model_warm_started_from_a_shared_one_predicts_as_it_did_for_its_env(shared, tiny_data, dot_data, tmp_path):
    from world_model.checkpoint import CheckpointError
    from world_model.warm_start import warm_start

    source = world_model.load(shared[0] / "latest")
    dot_cfg_ = replace(source.cfg, action_dim=3, envs=None, env_action_dims=None)
    target = WorldModel(dot_cfg_)
    note = warm_start(target, shared[0] / "latest", ["dot"])
    assert "dot: its own embedding" in note
    z = torch.randn(4, 2, source.cfg.latent_dim)  # [B, K, D]
    actions = torch.rand(4, 2, 3) - 0.5  # [B, K, A_dot]
    # a single-env model of the dot: the shared model's predictions for the dot, its code folded in
    assert torch.allclose(target.predictor(z, actions), source.predictor(z, encode_actions(actions, 1, [2, 3])), atol=1e-5)
    frames = torch.randint(0, 255, (2, 2, 32, 32, 3), dtype=torch.uint8)
    assert torch.equal(target.encode(frames), source.encode(frames))
    # an env the source never saw starts from the mean of its env embeddings
    unseen = WorldModel(replace(source.cfg, action_dim=2 + 1, envs=["pusht"], env_action_dims=[2]))
    assert "pusht: the mean embedding" in warm_start(unseen, shared[0] / "latest", ["pusht"])
    w = source.predictor.action[0].weight
    assert torch.equal(unseen.predictor.action[0].weight[:, 2], (w[:, 3] + w[:, 4]) / 2)
    assert torch.equal(unseen.predictor.action[0].weight[:, :2], w[:, :2])
    # another architecture is refused in one line that names the setting
    assert source.cfg.token_dim == 12
    with pytest.raises(CheckpointError, match=r"another architecture \(token_dim=12 there, 4 here\)"):
        warm_start(WorldModel(replace(dot_cfg_, token_dim=4)), shared[0] / "latest", ["dot"])


def test_a_fine_tuning_run_starts_from_its_init_and_is_its_own_run(shared, tiny_data, dot_data, tmp_path, capsys):
    init = shared[0] / "latest"
    # seed 1: a fresh start differs from the init, a seed-0 run (the same seed would start alike)
    cfg = cached_config(tiny_data, tmp_path, steps=1, monitor_every=1, checkpoint_every=1, seed=1)
    tuned = train(replace(cfg, init=str(init)), dot_data, progress=False)
    assert "weights from" in capsys.readouterr().out
    scratch_dir = run_dir(cfg, dot_data)
    assert tuned != scratch_dir  # the init's weights are in the run identity
    identity = world_model.read_manifest(tuned / "latest")["train_config"]["identity"]
    assert identity["init"]["weights_sha256"] == world_model.read_manifest(init)["files"]["model.safetensors"]["sha256"]
    # one step (a half-warm-up rate) away from the init's encoder, unlike a fresh start
    tuned_w, init_w = world_model.load(tuned / "latest").state_dict(), world_model.load(init).state_dict()
    scratch_w = world_model.load(train(cfg, dot_data, progress=False) / "latest").state_dict()
    encoder = [k for k in init_w if k.startswith("encoder.") and init_w[k].numel() > 1]
    assert max((tuned_w[k] - init_w[k]).abs().max().item() for k in encoder) < 2e-3
    assert max((scratch_w[k] - init_w[k]).abs().max().item() for k in encoder) > 0.05
