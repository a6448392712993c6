"""The settings of `python -m agent.run` checked before any work (collection, training, fitting), each
refused in one line that names the setting to change."""

from __future__ import annotations

from agent.configurator import Configurator, TaskSettings, build_planner, build_subgoal_search
from world_model.encoder import stem_strides
from world_model.plain import plain

VIDEO_SIZES = (8, 2048)  # eval.video_size: the envs render at least 8 px; a panel above 2048 px is no video


def check_frame_size(cfg) -> None:
    """The env's frames must be a size the world model takes, before a dataset of them is collected
    (a checkpoint's own size is compared with the env's once it is loaded: check_model_fits_env)."""
    size = cfg.env.get("image_size")
    if cfg.checkpoint or size is None:
        return
    try:
        stem_strides(size)
    except ValueError as e:
        raise ValueError(f"env.image_size={size}: {e}") from None


def eval_goal_kinds(cfg, env) -> list[str]:
    """The goal kinds an evaluation runs (eval.goal_kinds, or every one the env offers), each known to
    the env and the configurator, with the planner built once for each: its settings are checked here,
    not after the critic is fitted."""
    kinds = cfg.eval.goal_kinds
    if kinds is not None and len(kinds) == 0:
        raise ValueError(f"eval.goal_kinds=[] names no goal kind; pass some of {list(env.goal_kinds)}, or leave it "
                         "null for every one")
    configurator = Configurator({k: TaskSettings(**v) for k, v in plain(cfg.configurator).items()}, env)
    kinds = list(kinds) if kinds is not None else list(env.goal_kinds)
    for kind in kinds:
        setup = configurator.setup(kind, cfg.planner.get("name"))
        build_planner(plain(cfg.planner), setup)
        build_subgoal_search(plain(cfg.planner), setup, seed=0)  # a hierarchical planner's high level, if any
    return kinds


def check_eval_settings(cfg, env) -> list[str]:
    """The evaluation's own sizes and its goal kinds (eval_goal_kinds), which it returns."""
    for name in ("episodes", "batch"):
        if cfg.eval[name] < 1:
            raise ValueError(f"eval.{name}={cfg.eval[name]}: it must be at least 1")
    if cfg.eval.videos < 0:
        raise ValueError(f"eval.videos={cfg.eval.videos}: it must be at least 0 (0 = no videos)")
    low, high = VIDEO_SIZES
    if cfg.eval.videos and not low <= cfg.eval.video_size <= high:
        raise ValueError(f"eval.video_size={cfg.eval.video_size}: it must lie in [{low}, {high}] pixels per panel side "
                         "(or set eval.videos=0)")
    return eval_goal_kinds(cfg, env)
