"""Every YAML under configs/ composes against its schema and builds what it describes."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _compose(name: str, overrides=()):
    from agent.run_config import RunConfig
    from hydra.core.config_store import ConfigStore
    from world_model.collect import _register_configs as register_collect
    from world_model.train import _register_configs as register_train

    register_collect()
    register_train()
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("env", options("env"))
def test_every_env_config_builds_its_env(env):
    cfg = _compose("run", [f"env={env}", "env.image_size=16"])
    built = instantiate(cfg.env)
    obs, _ = built.reset(seed=0)
    assert obs["pixels"].shape == (16, 16, 3) and built.action_repeat == cfg.env.action_repeat
    built.close()


@pytest.mark.parametrize("model", options("world_model"))
def test_every_world_model_config_builds_a_model(model):
    from world_model.model import WorldModel, WorldModelConfig

    cfg = _compose("train", [f"world_model={model}"])
    wm = WorldModel(WorldModelConfig(**OmegaConf.to_container(cfg.world_model, resolve=True)))
    assert wm.cfg.image_size == cfg.env.image_size and wm.cfg.representation == model


@pytest.mark.parametrize("loss", options("loss"))
def test_every_loss_config_builds_a_loss(loss):
    from world_model.losses import JEPALoss, LossConfig
    from world_model.model import WorldModel, WorldModelConfig

    cfg = _compose("train", [f"loss={loss}"])
    model = WorldModel(WorldModelConfig(**OmegaConf.to_container(cfg.world_model, resolve=True)))
    assert JEPALoss(LossConfig(**OmegaConf.to_container(cfg.loss)), model).cfg.regularizer == loss


@pytest.mark.parametrize("planner", options("planner"))
def test_every_planner_config_builds_a_planner(planner):
    cfg = _compose("run", [f"planner={planner}"])
    assert type(instantiate(cfg.planner)).__name__ == planner.upper()


@pytest.mark.parametrize("configurator", options("configurator"))
def test_every_configurator_config_builds_a_configurator(configurator):
    from agent.configurator import Configurator, ConfiguratorConfig, TaskSettings

    cfg = _compose("run", [f"configurator={configurator}"])
    conf = OmegaConf.to_container(cfg.configurator)
    setup = Configurator(ConfiguratorConfig(**{k: TaskSettings(**v) for k, v in conf.items()})).setup("task", 5)
    assert setup.decisions == conf["task"]["budget"] // 5


@pytest.mark.parametrize("data", options("data"))
def test_every_data_config_composes(data):
    cfg = _compose("collect", [f"data@_global_={data}"])
    assert cfg.episodes > 0 and len(cfg.behaviour.mode_weights) == 3


@pytest.mark.parametrize("name", ["collect", "train", "run"])
def test_top_level_configs_compose_and_reject_unknown_keys(name):
    cfg = _compose(name)
    assert cfg.env.name == "reacher"
    with pytest.raises(Exception, match="no_such_key"):
        _compose(name, ["no_such_key=1"])


@pytest.mark.parametrize("critic", options("critic"))
def test_every_critic_config_builds_a_critic(critic):
    import torch

    from agent.critic import CriticConfig, ReachCritic

    cfg = _compose("run", [f"critic={critic}"])
    built = ReachCritic(256, CriticConfig(**OmegaConf.to_container(cfg.critic)))
    assert built.embed(torch.zeros(3, 256)).shape == (3, cfg.critic.dim)
