"""The settings of `python -m agent.run` checked before any work (collection, training, fitting), each
refused in one line that names the setting to change."""

from __future__ import annotations

from agent.collect import check_data_settings
from agent.configurator import Configurator, build_planner, build_subgoal_search
from agent.critic import CriticConfig
from agent.landmarks import LandmarkConfig
from agent.prior import PriorConfig
from agent.readout import ReadoutConfig
from world_model.cli import SettingError
from world_model.decoder import DecoderConfig
from world_model.encoder import stem_strides
from world_model.ensemble import EnsembleConfig
from world_model.macro import MacroConfig
from world_model.plain import plain
from world_model.train import check_train_settings

BASELINES = ("random", "zero")  # agent/policies.py: the baselines an evaluation can run beside the planner
VIDEO_SIZES = (8, 2048)  # eval.video_size: the envs render at least 8 px; a panel above 2048 px is no video
# the modules fitted after the world model: config group -> the config whose own checks (__post_init__) hold
FITTED = {"critic": CriticConfig, "macro": MacroConfig, "landmarks": LandmarkConfig, "decoder": DecoderConfig,
          "ensemble": EnsembleConfig, "readout": ReadoutConfig, "prior": PriorConfig}


def check_settings(cfg) -> None:
    """The run's typed settings, before the env is built and anything is collected, trained or fitted:
    the video (data), the world model's training (world_model, loss, optim, the schedule), every module
    fitted after it (whether this run fits it or not: a bad value is a mistake either way) and the
    evaluation's sizes. The first bad one is refused in one line naming it (SettingError)."""
    check_data_settings(cfg.data)
    check_train_settings(cfg)
    for section, schema in FITTED.items():
        try:
            schema(**plain(cfg[section]))
        except ValueError as err:  # the config's own check: its message names section.setting
            raise SettingError(str(err)) from None
    check_eval_sizes(cfg)


def check_frame_size(cfg) -> None:
    """The env's frames must be a size the world model takes, before a dataset of them is collected
    (a checkpoint's own size is compared with the env's once it is loaded: agent.evaluate.model_for_env)."""
    size = cfg.env.get("image_size")
    if cfg.checkpoint or size is None:
        return
    try:
        stem_strides(size)
    except ValueError as e:
        raise SettingError(f"env.image_size={size}: {e}") from None


def eval_goal_kinds(cfg, env) -> list[str]:
    """The goal kinds an evaluation runs (eval.goal_kinds, or every one the env offers), each known to
    the env and the configurator, with the planner built once for each: its settings are checked here,
    not after the critic is fitted."""
    kinds = cfg.eval.goal_kinds
    if kinds is not None and len(kinds) == 0:
        raise SettingError(f"eval.goal_kinds=[] names no goal kind; pass some of {list(env.goal_kinds)}, or leave it "
                         "null for every one")
    configurator = Configurator.of_run(cfg.configurator, env)
    kinds = list(kinds) if kinds is not None else list(env.goal_kinds)
    for kind in kinds:
        setup = configurator.setup(kind, cfg.planner.get("name"))
        build_planner(plain(cfg.planner), setup)
        build_subgoal_search(plain(cfg.planner), setup, seed=0)  # a hierarchical planner's high level, if any
    return kinds


def check_eval_sizes(cfg) -> None:
    """The evaluation's own sizes (no env needed)."""
    for name in ("episodes", "batch"):
        if cfg.eval[name] < 1:
            raise SettingError(f"eval.{name}={cfg.eval[name]}: it must be at least 1")
    if cfg.eval.videos < 0:
        raise SettingError(f"eval.videos={cfg.eval.videos}: it must be at least 0 (0 = no videos)")
    low, high = VIDEO_SIZES
    if cfg.eval.videos and not low <= cfg.eval.video_size <= high:
        raise SettingError(f"eval.video_size={cfg.eval.video_size}: it must lie in [{low}, {high}] pixels per panel "
                           "side (or set eval.videos=0)")
    unknown = [b for b in cfg.eval.baselines if b not in BASELINES]
    if unknown:
        raise SettingError(f"eval.baselines={list(cfg.eval.baselines)}: unknown {unknown}; choose from {list(BASELINES)}")


def check_eval_settings(cfg, env) -> list[str]:
    """The evaluation's own sizes (check_eval_sizes) and its goal kinds (eval_goal_kinds), which it
    returns; a goal kind's settings the configurator refuses (a goal source, a planner setting) are a
    SettingError too, before any work."""
    check_eval_sizes(cfg)
    try:
        return eval_goal_kinds(cfg, env)
    except SettingError:
        raise
    except ValueError as e:  # the configurator's and the planners' own refusals: one line each already
        raise SettingError(str(e)) from None
