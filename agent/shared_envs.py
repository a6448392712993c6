"""The envs of a shared world model trained by `agent.run`: `envs=[<env A>,<env B>,...]`.

`python -m agent.run env=<env B> "envs=[<env A>,<env B>]"` collects each listed env's video
with that env's own data settings (configs/data/<name>.yaml) at this run's frame size
(env.image_size), trains one world model on all of them (world_model.train's list of datasets,
mixed by `dataset_weights`) and plans in `env`, which must be one of them. The same command with
another `env=` (and the same `envs`, `steps`, ...) finds that model in the cache instead of training
it again. Each env's settings are composed as `python -m agent.run env=<name>` would compose them,
so its dataset is the one a single-env run of that env at this frame size collects.
"""

from __future__ import annotations

import envs as envs_pkg
from agent.run_config import compose_run
from world_model.cli import SettingError


def check_shared_envs(cfg) -> None:
    """`envs`: registered names, no repeats, `env` among them, no `checkpoint` beside it (SettingError)."""
    names = cfg.get("envs")
    if names is None:
        return
    names = list(names)
    known = envs_pkg.names()
    for name in names:
        if name not in known:
            raise SettingError(f"envs: {name!r} is not a registered env; choose among {', '.join(known)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise SettingError(f"envs={names}: list two or more different envs (a shared world model's envs), "
                           "or leave envs unset for a model of env alone")
    if cfg.env["name"] not in names:
        raise SettingError(f"env={cfg.env['name']} is not in envs={names}: the run plans in env, so list it "
                           "among the shared model's envs")
    if cfg.checkpoint:
        raise SettingError("envs= trains (or finds) a shared model, checkpoint= evaluates a given one: pass one "
                           "of them")
    if cfg.data.get("out"):
        raise SettingError("data.out names one dataset folder, but envs= collects one per env under cache_root; "
                           "leave data.out unset")


def env_data_configs(cfg) -> list[tuple]:
    """(env node, data node) of each env in `cfg.envs`, in its order: the env's own configs at this
    run's frame size, cache root and collection workers (this run's own env and data for `env`)."""
    nodes = []
    for name in cfg.envs:
        if name == cfg.env["name"]:
            nodes.append((cfg.env, cfg.data))
            continue
        composed = compose_run([f"env={name}", f"env.image_size={cfg.env['image_size']}",
                             f"cache_root={cfg.cache_root}", f"data.workers={cfg.data.workers}"])
        nodes.append((composed.env, composed.data))
    return nodes

