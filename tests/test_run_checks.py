"""`agent.run` refuses bad settings in one line naming the setting, before collecting anything; it
refuses a checkpoint trained on another env's video; `threads` holds for everything the process
fits, not only for the world model's training."""

import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf, open_dict
from test_fake_env import DotEnv, replay

import agent.run as run_module
import envs
import world_model
from agent.run_config import RunConfig
from world_model.cli import SettingError
from world_model.dataset import DatasetError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def dot_family(monkeypatch):
    monkeypatch.setitem(envs.REGISTRY, "dot", (DotEnv, {}, types.SimpleNamespace(replay=replay)))


def dot_cfg(cache: Path, *overrides: str, image_size=32):
    """A tiny run of the dot env of test_fake_env, as its test configures one."""
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        # loss.probe_weight=0 and refit.steps=0: the composed env is the reacher, whose schedule would turn the
        # probe term and the refit on
        cfg = compose("run", overrides=[f"cache_root={cache}", "steps=4", "eval.episodes=1", "eval.videos=0",
                                        "loss.probe_weight=0", "refit.steps=0", *overrides])
    with open_dict(cfg):
        cfg.env = OmegaConf.create({"name": "dot", "image_size": image_size})
        cfg.data = OmegaConf.merge(cfg.data, {"behaviour": {}, "episodes": 4, "steps": 6, "episodes_per_shard": 2,
                                              "workers": 1})
        reach = {**OmegaConf.to_container(cfg.configurator["state"]), "planner": {"cem": {"elites": 2}},
                 "horizon": 2, "critic_weight": 0.5}
        cfg.configurator = OmegaConf.create({"reach": reach})
    return cfg


@pytest.mark.parametrize("overrides, image_size, line", [
    # before: ConfigKeyError from the critic's lookup, after collection and training
    (["eval.goal_kinds=[joints]"], 32, r"unknown goal kind 'joints' for env dot; choose from \['reach'\]"),
    # before: every goal kind was evaluated
    (["eval.goal_kinds=[]"], 32, r"eval.goal_kinds=\[\] names no goal kind; pass some of \['reach'\], or leave it null"),
    # before: "elites must be in [1, samples=0], got 2"
    (["planner.samples=0"], 32, r"planner cem: samples must be at least 1, got 0"),
    # before: "action_repeat and time_limit must be >= 1 and image_size >= 8", from the video's env
    (["eval.videos=1", "eval.video_size=0"], 32, r"eval.video_size=0: it must lie in \[8, 2048\] pixels per panel"),
    # before: "actions hold NaN or infinite values", from the world model, at the first plan
    (["planner.init_std=nan"], 32, r"planner cem: init_std=nan is not a finite number"),
    (["planner=hierarchical", "planner.min_std=inf"], 32, r"planner hierarchical: min_std=inf is not a finite"),
    (["planner=hierarchical", "planner.subgoal_search.planner.min_std=nan"], 32,
     r"planner hierarchical subgoal_search.planner: min_std=nan is not a finite"),
    # before: accepted
    (["threads=-1"], 32, r"threads=-1: it must be a whole number of CPU threads, at least 0"),
    ([], 10000, r"env.image_size=10000: image_size 10000 is not supported; use 32, 64, 96 or 128"),
    ([], 1000, r"env.image_size=1000: image_size 1000 is not supported; use 32, 64, 96 or 128"),
    # before: a traceback (stage, goal source), or refused only after training (baselines)
    (["stage=everything"], 32, r"stage='everything': choose one of collect, train, eval, all"),
    (["eval.baselines=[random,greedy]"], 32, r"eval.baselines=\['random', 'greedy'\]: unknown \['greedy'\]"),
    (["configurator.state.goal_source=nearest"], 32, r"configurator.reach.goal_source='nearest': choose from"),
    # a shared model's envs (agent/shared_envs.py)
    (["envs=[dot,dots]"], 32, r"envs: 'dots' is not a registered env; choose among"),
    (["envs=[dot,dot]"], 32, r"envs=\['dot', 'dot'\]: list two or more different envs"),
    (["envs=[reacher,two-rooms]"], 32, r"env=dot is not in envs=\['reacher', 'two-rooms'\]: the run plans in env"),
    (["envs=[dot,reacher]", "checkpoint=/nowhere"], 32, r"envs= trains \(or finds\) a shared model, checkpoint="),
])
def test_a_bad_setting_is_one_line_naming_it_before_any_work(tmp_path, overrides, image_size, line):
    cfg = dot_cfg(tmp_path / "cache", *overrides, image_size=image_size)
    with pytest.raises(SettingError, match=f"^{line}"):  # SettingError: printed as one line by the command
        run_module.run(cfg, tmp_path / "out")
    assert not (tmp_path / "cache").exists()  # nothing collected, trained or fitted


def test_a_checkpoint_of_another_envs_video_is_refused_in_one_line(tmp_path):
    wm = world_model.WorldModel(world_model.WorldModelConfig(**TINY_MODEL, action_dim=3))
    for env in ("two-rooms", "dot"):
        train_cfg = {"identity": {"data": {"env": {"name": env, "image_size": 32}}}, "dataset": str(tmp_path / "gone")}
        world_model.save(tmp_path / env, wm, step=0, train_cfg=train_cfg)
    cfg = dot_cfg(tmp_path / "cache", "stage=eval", f"checkpoint={tmp_path / 'two-rooms'}")
    # before: frame and action sizes alone were compared, and these fit
    with pytest.raises(ValueError, match=rf"^checkpoint {tmp_path / 'two-rooms'} was trained on the video of env "
                                         r"two-rooms, not dot; pass env=two-rooms, or a checkpoint trained on dot$"):
        run_module.run(cfg, tmp_path / "out")
    cfg = dot_cfg(tmp_path / "cache", "stage=eval", f"checkpoint={tmp_path / 'dot'}")
    with pytest.raises(DatasetError, match="the critic is fitted on the dataset the world model was trained on"):
        run_module.run(cfg, tmp_path / "out")  # its own env passes, on to the critic (whose dataset is gone)


def test_threads_hold_for_everything_the_process_fits(tmp_path, monkeypatch):
    """stage=eval trains nothing: before, the critic was fitted on torch's default thread count."""
    wm = world_model.WorldModel(world_model.WorldModelConfig(**TINY_MODEL, action_dim=3))
    world_model.save(tmp_path / "model", wm, step=0, train_cfg={"dataset": str(tmp_path / "data")})
    seen = []

    def fit(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise KeyboardInterrupt  # stop here: the thread count is all this test needs

    monkeypatch.setitem(run_module.FITTED_MODULES, "critic", replace(run_module.FITTED_MODULES["critic"], train=fit))
    monkeypatch.setattr(run_module, "Dataset", lambda root: None)
    monkeypatch.setattr(run_module, "_fitted_folder", lambda cfg, *args: tmp_path / "cache" / "critics" / "c")
    default, wanted = torch.get_num_threads(), torch.get_num_threads() + 1
    try:
        cfg = dot_cfg(tmp_path / "cache", "stage=eval", f"checkpoint={tmp_path / 'model'}", f"threads={wanted}")
        with pytest.raises(KeyboardInterrupt):
            run_module.run(cfg, tmp_path / "out")
        assert seen == [wanted]
        cfg = dot_cfg(tmp_path / "cache", "stage=eval", f"checkpoint={tmp_path / 'model'}", "threads=0")
        with pytest.raises(KeyboardInterrupt):
            run_module.run(cfg, tmp_path / "out")
        assert seen == [wanted, default]  # 0: the count the process started with, whatever ran before
    finally:
        torch.set_num_threads(default)


@pytest.mark.parametrize("override, line", [
    # each of these used to be found only after the dataset was collected (minutes), most after training too
    ("steps=-1", r"steps=-1: it must be at least 1"),
    ("optim.batch_size=0", r"optim.batch_size=0: it must be at least 1"),
    ("optim.lr=0", r"optim.lr=0(\.0)?: it must be a finite number above 0"),
    ("optim.lr=-1e-3", r"optim.lr=-0.001: it must be a finite number above 0"),
    ("optim.lr=nan", r"optim.lr=nan: it must be a finite number above 0"),
    ("optim.grad_clip=0", r"optim.grad_clip=0(\.0)?: it must be a finite number above 0"),
    ("held_out_fraction=0", r"held_out_fraction=0(\.0)?: it must lie in \(0, 1\)"),
    ("held_out_fraction=1.5", r"held_out_fraction=1.5: it must lie in \(0, 1\)"),
    ("world_model.token_dim=0", r"world_model: token_dim must be >= 1, got 0"),
    ("loss.rollout_steps=0", r"loss: rollout_steps must be >= 1, got 0"),
    ("data.episodes=0", r"data.episodes=0: it must be at least 1"),
    ("data.seed=-1", r"data.seed=-1: it must be at least 0"),
    ("eval.episodes=0", r"eval.episodes=0: it must be at least 1"),
    ("critic.steps=-1", r"critic.steps must be at least 1, got -1"),
    ("critic.held_out_fraction=1", r"critic.held_out_fraction=1(\.0)?: it must lie in \(0, 1\)"),
    ("macro.steps=-1", r"macro.steps must be at least 1, got -1"),
    ("macro.lr=0", r"macro.lr must be a finite number above 0, got 0"),
    ("decoder.steps=-5", r"decoder.steps must be at least 1, got -5"),
    ("landmarks.stride=0", r"landmarks.stride must be at least 1, got 0"),
    ("landmarks.held_out_fraction=1", r"landmarks.held_out_fraction=1(\.0)?: it must lie in \[0, 1\)"),
])
def test_every_typed_setting_is_refused_before_collection(tmp_path, monkeypatch, override, line):
    """A bad training, data, fitted-module or evaluation setting is a SettingError (one line on the
    command line) raised before the dataset is collected or the env even built."""
    from world_model.cli import SettingError

    def never(what: str):
        def called(*args, **kwargs):
            raise AssertionError(f"{override} reached {what}")
        return called

    for what in ("collect", "train"):
        monkeypatch.setattr(run_module, what, never(what))
    monkeypatch.setattr(run_module.envs_pkg, "make", never("envs.make"))
    cfg = dot_cfg(tmp_path / "cache", override)
    cfg.merge_with(OmegaConf.from_dotlist([override]))  # again: dot_cfg sets its own data sizes after the overrides
    with pytest.raises(SettingError, match=f"^{line}"):
        run_module.run(cfg, tmp_path / "out")
    cfg = dot_cfg(tmp_path / "cache")  # the same run without it goes on to build the env
    with pytest.raises(AssertionError, match="reached"):
        run_module.run(cfg, tmp_path / "out")


def test_one_command_collects_each_envs_video_trains_a_shared_model_and_plans_in_env(tmp_path, monkeypatch):
    from agent import shared_envs
    from agent.collect import dataset_dir, identity

    composed = shared_envs.compose_run  # each other env's own configs, made tiny here
    monkeypatch.setattr(shared_envs, "compose_run", lambda overrides: composed(
        [*overrides, "data.episodes=4", "data.steps=6", "data.episodes_per_shard=2"]))
    cache = tmp_path / "cache"
    cfg = dot_cfg(cache, "envs=[dot,two-rooms]", "eval.baselines=[]", "planner.samples=8", "planner.iterations=2",
                  "critic.steps=5", "critic.batch_size=16")
    (env, data), (rooms_env, rooms_data) = shared_envs.env_data_configs(cfg)
    assert env["name"] == "dot" and rooms_env["name"] == "two-rooms" and rooms_env["image_size"] == 32
    # two-rooms' video is the one a single-env run of two-rooms at this frame size collects
    single = composed(["env=two-rooms", "env.image_size=32", f"cache_root={cache}", "data.episodes=4", "data.steps=6",
                       "data.episodes_per_shard=2"])
    assert identity(rooms_env, rooms_data) == identity(single.env, single.data)
    run_module.run(cfg, tmp_path / "out")
    manifest = world_model.read_manifest(next((cache / "models").glob("dot+two-rooms-*")) / "latest")
    assert manifest["model_config"]["envs"] == ["dot", "two-rooms"]
    assert manifest["train_config"]["dataset"] == [str(dataset_dir(e, d, str(cache))) for e, d in ((env, data),
                                                                                                   (rooms_env, rooms_data))]
    summary = __import__("json").loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["dataset"] == manifest["train_config"]["dataset"][0]  # planning in dot, on dot's own video
    assert summary["replay_failures"] == 0 and "train_s" in summary["timings"]
    # the same command again finds that model: nothing is trained a second time
    cfg.stage = "eval"
    run_module.run(cfg, tmp_path / "out2")
    assert len(list((cache / "models").iterdir())) == 2  # the run folder and its lock file
