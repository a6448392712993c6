"""Every YAML under configs/ composes against its schema and builds what it describes."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _compose(name: str, overrides=(), return_hydra_config: bool = False):
    from hydra.core.config_store import ConfigStore

    from agent.collect import _register_configs as register_collect
    from agent.run_config import RunConfig
    from world_model.train import _register_configs as register_train

    register_collect()
    register_train()
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def build_env(env_node, **overrides):
    import envs
    from agent.collect import env_settings

    return envs.make(**{**env_settings(env_node), **overrides})


@pytest.mark.parametrize("env", options("env"))
def test_every_env_config_builds_its_env(env):
    cfg = _compose("run", [f"env={env}", "env.image_size=16"])
    built = build_env(cfg.env)
    obs, _ = built.reset(seed=0)
    assert obs["pixels"].shape == (16, 16, 3) and built.action_repeat == cfg.env.action_repeat
    assert built.name == cfg.env.name == env
    built.close()


def _sized(world_model_node, image_size: int, action_dim: int) -> dict:
    """A world_model config node as a dict, with the sizes training would take from a dataset."""
    values = OmegaConf.to_container(world_model_node, resolve=True)
    assert values["image_size"] is None and values["action_dim"] is None  # the dataset's, at training
    return {**values, "image_size": image_size, "action_dim": action_dim}


@pytest.mark.parametrize("model", options("world_model"))
def test_every_world_model_config_builds_a_model(model):
    from world_model.model import WorldModel, WorldModelConfig
    from world_model.train import model_config

    cfg = _compose("run", [f"world_model={model}"])
    with pytest.raises(ValueError, match="image_size=None"):
        WorldModel(WorldModelConfig(**OmegaConf.to_container(cfg.world_model, resolve=True)))
    env = build_env(cfg.env)  # the sizes a dataset of the run's env would have (no frame rendered)
    dataset = SimpleNamespace(root="<dataset>", image_size=env.image_size, action_dim=env.action_space.shape[0])
    env.close()
    wm = WorldModel(model_config(cfg.world_model, dataset))
    assert wm.cfg.image_size == cfg.env.image_size and wm.cfg.action_dim == 2 and wm.cfg.representation == model


@pytest.mark.parametrize("loss", options("loss"))
def test_every_loss_config_builds_a_loss(loss):
    from world_model.losses import JEPALoss, LossConfig
    from world_model.model import WorldModel, WorldModelConfig

    cfg = _compose("train", [f"loss={loss}"])
    model = WorldModel(WorldModelConfig(**_sized(cfg.world_model, image_size=32, action_dim=2)))
    assert JEPALoss(LossConfig(**OmegaConf.to_container(cfg.loss)), model).cfg.regularizer == loss


@pytest.mark.parametrize("planner", options("planner"))
def test_every_planner_config_builds_a_planner_with_its_class_defaults(planner):
    """configs/planner/<name>.yaml names itself, builds through the configurator with a goal
    kind's horizon and overrides, and sets every setting to its class default (one source of truth)."""
    import inspect

    from hydra.utils import get_class

    from agent.configurator import PlanSetup, build_planner

    cfg = OmegaConf.to_container(_compose("run", [f"planner={planner}"]).planner)
    assert cfg["name"] == planner
    defaults = {k: p.default for k, p in inspect.signature(get_class(cfg["_target_"])).parameters.items()}
    own = [k for k, v in cfg.items() if k not in ("name", "_target_") and not isinstance(v, dict)]  # not nested planners
    assert {k: cfg[k] for k in own} == {k: defaults[k] for k in own}
    override = {"seed": 7} if "seed" in defaults else {"replan_every": 7}  # the hierarchical one seeds its levels
    setup = PlanSetup(budget=20, decisions=4, horizon=3, planner_overrides=override, replan_every=1,
                      shrink_horizon=True, cost_weights={}, goal_energy={})
    built = build_planner(cfg, setup)
    assert built.horizon == 3 and all(getattr(built, k) == v for k, v in override.items())
    with pytest.raises(ValueError, match="takes no setting bogus"):
        build_planner(cfg, PlanSetup(**{**setup.__dict__, "planner_overrides": {"bogus": 1}}))


@pytest.mark.parametrize("configurator", options("configurator"))
def test_every_configurator_config_builds_a_configurator(configurator):
    """configs/configurator/<env>.yaml is picked by the env's name and plans every goal kind it offers."""
    from agent.configurator import Configurator, TaskSettings

    assert configurator in options("env"), f"configs/configurator/{configurator}.yaml has no configs/env/ twin"
    cfg = _compose("run", [f"env={configurator}"])
    conf = OmegaConf.to_container(cfg.configurator)
    env = build_env(cfg.env)
    configurator_ = Configurator({k: TaskSettings(**v) for k, v in conf.items()}, env)
    assert sorted(conf) == sorted(env.goal_kinds)
    for kind, settings in conf.items():
        setup = configurator_.setup(kind)
        budget = settings.get("budget") or env.goal_kinds[kind].budget
        assert setup.decisions == budget // env.action_repeat
    env.close()


@pytest.mark.parametrize("data", options("data"))
def test_every_data_config_composes(data):
    """configs/data/<env>.yaml is picked by the env's name, and its behaviour settings build the
    env's behaviour policy, whose actions lie in the action space."""
    import numpy as np

    assert data in options("env"), f"configs/data/{data}.yaml has no configs/env/ twin"
    cfg = _compose("collect", [f"env={data}"])
    assert cfg.data.episodes > 0 and cfg.data.steps > 0
    env = build_env(cfg.env, image_size=16)
    obs, _ = env.reset(seed=0)
    policy = env.behaviour_policy(np.random.default_rng(0), **OmegaConf.to_container(cfg.data.behaviour))
    for _ in range(3):
        action = policy.act(obs)
        assert env.action_space.contains(action)
        obs = env.step(action)[0]
    env.close()


@pytest.mark.parametrize("name", ["collect", "train", "run"])
def test_top_level_configs_compose_and_reject_unknown_keys(name):
    cfg = _compose(name)
    if name == "train":
        assert "env" not in cfg and "data" not in cfg and cfg.dataset is None  # it trains on a dataset folder
    else:
        assert cfg.env.name == "reacher"
        # data (and the run's configurator) follow the env's name
        other = _compose(name, ["env=reacher-hard"])
        assert other.env.name == "reacher-hard" and other.data.episodes == cfg.data.episodes
    with pytest.raises(Exception, match="no_such_key"):
        _compose(name, ["no_such_key=1"])


def _leaves(node, prefix: str = ""):
    """The dotted keys of a config's values: {"a": {"b": 1}, "c": 2} -> "a.b", "c"."""
    for key, value in node.items():
        if OmegaConf.is_dict(value):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


@pytest.mark.parametrize("schedule", options("schedule"))
def test_every_schedule_config_sets_its_envs_training_and_the_command_line_wins(schedule):
    """configs/schedule/<env>.yaml is picked by the env's name and overrides TrainConfig's training
    settings (its steps, its loss) and RefitConfig's for that env only; the command line still wins."""
    assert schedule in options("env"), f"configs/schedule/{schedule}.yaml has no configs/env/ twin"
    from agent.run_config import RunConfig

    own = OmegaConf.load(CONFIGS / "schedule" / f"{schedule}.yaml")
    base = OmegaConf.structured(RunConfig())  # TrainConfig's and RefitConfig's defaults, where they are written
    keys = list(_leaves(own))  # dotted keys, e.g. "steps", "loss.probe_weight"
    assert keys, f"configs/schedule/{schedule}.yaml sets nothing"
    composed = _compose("run", [f"env={schedule}"])
    without = [env for env in options("env") if env not in options("schedule")]
    assert without
    for key in keys:
        value, default = OmegaConf.select(own, key), OmegaConf.select(base, key)
        assert value != default, f"{key}: the file sets the default, so it is not needed"
        assert OmegaConf.select(composed, key) == value
        other = (not value) if isinstance(default, bool) else 7 if isinstance(default, int) else "other" if isinstance(default, str) else 0.25 if value == 0.5 else 0.5
        assert OmegaConf.select(_compose("run", [f"env={schedule}", f"{key}={other}"]), key) == other
        assert all(OmegaConf.select(_compose("run", [f"env={env}"]), key) == default for env in without)


@pytest.mark.parametrize("critic", options("critic"))
def test_every_critic_config_builds_a_critic(critic):
    import torch

    from agent.critic import CriticConfig, ReachCritic

    cfg = _compose("run", [f"critic={critic}"])
    built = ReachCritic(256, CriticConfig(**OmegaConf.to_container(cfg.critic)))
    assert built.embed(torch.zeros(3, 256)).shape == (3, cfg.critic.dim)


def _hydra_launcher(overrides=()):
    return _compose("run", overrides, return_hydra_config=True).hydra.launcher


def test_the_default_launcher_stays_local_and_the_slurm_one_is_an_extra():
    """configs/hydra/launcher/slurm.yaml extends the plugin's submitit_slurm; a plain run keeps
    hydra's basic launcher and does not need the plugin (an optional extra: .[slurm])."""
    assert _hydra_launcher()._target_ == "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    slurm = OmegaConf.load(CONFIGS / "hydra" / "launcher" / "slurm.yaml")
    assert list(slurm.defaults) == ["submitit_slurm", "_self_"]


def test_the_slurm_launcher_config_composes_with_the_plugin():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="hydra-submitit-launcher is not installed (the optional extra: pip install -e '.[slurm]')")
    launcher = _hydra_launcher(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    # every setting of slurm.yaml is a field of the plugin's schema (an unknown one would not compose)
    assert launcher.partition == "gpu" and launcher.tasks_per_node == 1 and launcher.timeout_min == 180


@pytest.mark.parametrize("decoder", options("decoder"))
def test_every_decoder_config_builds_a_decoder(decoder):
    import torch

    from world_model.decoder import Decoder, DecoderConfig

    plain = next(env for env in options("env") if env not in options("schedule"))  # a schedule may set the decoder's steps
    cfg = DecoderConfig(**OmegaConf.to_container(_compose("run", [f"decoder={decoder}", f"env={plain}"]).decoder))
    assert cfg == DecoderConfig()  # the YAML equals the class defaults (one source of truth)
    built = Decoder(768, 96, (8, 12), cfg)  # the default representation: an 8x8 grid of 12 numbers, 96 px
    assert built(torch.zeros(2, 768)).shape == (2, 96, 96, 3)


@pytest.mark.parametrize("override, line", [
    ("steps=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
    ("eval.episodes=1.5", "Value '1.5' of type 'float' could not be converted to Integer"),
    ("data.episodes=many", "Value 'many' of type 'str' could not be converted to Integer"),
    ("eval.verify_replay=maybe", "Value 'maybe' is not a valid bool (type str)"),
])
def test_typed_settings_of_the_wrong_type_are_refused_by_the_schema(override, line):
    """hydra's lines on the command line: "Error merging override <override>", then the line below."""
    with pytest.raises(Exception, match=f"^Error merging override {override}$") as refused:
        _compose("run", [override])
    assert str(refused.value.__cause__).splitlines()[0] == line


def test_env_and_planner_settings_of_the_wrong_type_are_one_line():
    """The env and planner nodes are untyped in the schema (any env or planner may be named), so
    their values reach the constructors as given; each is checked against its default's type."""
    from agent.configurator import PlanSetup, build_planner

    cfg = _compose("run", ["env.image_size=big", "env.shadows=yes", "planner.samples=many"])
    with pytest.raises(ValueError, match=r"^env 'reacher': image_size='big' is a str, not an int \(default 64\); "
                                         r"shadows='yes' is a str, not a bool \(default False\)$"):
        build_env(cfg.env)
    setup = PlanSetup(budget=20, decisions=4, horizon=3, planner_overrides={}, replan_every=1, shrink_horizon=True,
                      cost_weights={}, goal_energy={})
    with pytest.raises(ValueError, match=r"^planner cem: samples='many' is a str, not an int \(default 50\)$"):
        build_planner(OmegaConf.to_container(cfg.planner), setup)
    # what the YAML types give is taken: an int for a float, None for an optional seed
    planner = {**OmegaConf.to_container(cfg.planner), "samples": 20, "init_std": 1}
    assert build_planner(planner, setup, seed=None).samples == 20
