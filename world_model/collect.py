"""Collects offline agent video: `python -m world_model.collect env=reacher episodes=200 workers=2`.

Episodes are split into shards; worker processes each render whole shards (rendering is the
bottleneck, about 60 frames/s per process). Every episode's randomness derives from (seed, episode
index) alone, so the data do not depend on the number of workers, and an interrupted collection
resumes by collecting only the shards the manifest does not list yet.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from world_model.atomic import fsync_dir
from world_model.behaviour import BehaviourConfig, BehaviourPolicy
from world_model.dataset import (
    MANIFEST,
    SCHEMA_VERSION,
    DatasetError,
    read_manifest,
    sha256_file,
    write_json_atomic,
)
from world_model.plain import plain


@dataclass
class EnvConfig:
    """Which environment to build and how (`envs.make(name, **settings)`)."""

    _target_: str = "envs.make"
    """Hydra target; environments are always built by envs.make."""
    name: str = "reacher"
    """Registered env name (see envs.names())."""
    image_size: int = 96
    """Height and width of rendered frames in pixels."""
    action_repeat: int = 5
    """Control steps (0.02 s each) per env step; one frame is rendered per env step."""
    time_limit: int = 1000
    """Episode length limit in control steps."""
    goal_kind: str = "task"
    """Default goal kind at reset: "task" (dm_control target) or "state" (a joint pose)."""
    shadows: bool = False
    """Render dm_control's shadows and floor reflection (4x slower frames in software GL, 16 vs 4 ms)."""


def env_settings(env: Any) -> dict:
    """The keyword arguments of envs.make from an env config (a dataclass, dict or DictConfig)."""
    settings = {k: v for k, v in plain(env).items() if k != "_target_"}
    return {"name": settings.pop("name"), **settings}


@dataclass
class DataConfig:
    """What to record: everything that changes the data, plus how to record it (workers)."""

    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    """The behaviour policy that acts while recording."""
    episodes: int = 800
    """Number of episodes to record."""
    steps: int = 100
    """Env steps per episode (each `env.action_repeat` control steps); frames per episode = steps + 1."""
    seed: int = 0
    """Root seed; episode i uses (seed, i) so data are independent of workers and resumes."""
    episodes_per_shard: int = 5
    """Episodes per shard file set: the unit of work, of progress and of resume."""
    workers: int = 2
    """Worker processes that render in parallel (1 = in this process)."""
    out: str | None = None
    """Dataset folder; default <cache_root>/datasets/<env>-<hash of the config>."""


@dataclass
class CollectConfig(DataConfig):
    """`python -m world_model.collect` settings: the data settings at the top level, and the env."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """The environment the video is recorded in."""
    cache_root: str = "cache"
    """Folder under which datasets are cached, keyed by their config."""


def identity(env, data) -> dict:
    """What makes two datasets the same data (workers and paths do not)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "env": env_settings(env),
        "behaviour": plain(data.behaviour),
        "episodes": int(data.episodes),
        "steps": int(data.steps),
        "seed": int(data.seed),
        "episodes_per_shard": int(data.episodes_per_shard),
    }


def dataset_dir(env, data, cache_root: str) -> Path:
    if data.out:
        return Path(data.out)
    key = hashlib.sha256(json.dumps(identity(env, data), sort_keys=True).encode()).hexdigest()[:10]
    return Path(cache_root) / "datasets" / f"{env.name}-{key}"


# ----------------------------------------------------------------------------- worker side
_ENV_CACHE: dict = {}


def _env_for(settings: dict):
    import envs

    key = json.dumps(settings, sort_keys=True)
    if key not in _ENV_CACHE:
        _ENV_CACHE.clear()
        _ENV_CACHE[key] = envs.make(**settings)
    return _ENV_CACHE[key]


def record_episode(env, policy: BehaviourPolicy, steps: int, reset_seed: int) -> dict[str, np.ndarray]:
    """Runs one episode; returns frames [T+1, H, W, 3], actions [T+1, A], proprio [T+1, P],
    states [T+1, S] and target_pos [2] (T = steps)."""
    obs, _ = env.reset(seed=reset_seed)
    frames, proprio, states, actions = [obs["pixels"]], [obs["proprio"]], [env.get_physics_state()], []
    for _ in range(steps):
        action = policy.act(obs["proprio"])
        obs, *_ = env.step(action)
        actions.append(action)
        frames.append(obs["pixels"])
        proprio.append(obs["proprio"])
        states.append(env.get_physics_state())
    actions.append(np.zeros_like(actions[0]))  # no action follows an episode's last frame
    return {
        "frames": np.stack(frames),
        "actions": np.stack(actions).astype(np.float32),
        "proprio": np.stack(proprio).astype(np.float32),
        "states": np.stack(states).astype(np.float64),
        "target_pos": env.target_pos,
    }


def collect_shard(job: dict) -> dict:
    """Records episodes [first, last) into <root>/<name> and returns the shard's manifest entry."""
    env = _env_for(job["env"])
    behaviour = BehaviourConfig(**job["behaviour"])
    episodes = []
    for index in range(job["first"], job["last"]):
        rng = np.random.default_rng([job["seed"], index])
        reset_seed = int(rng.integers(2**31 - 1))
        policy = BehaviourPolicy(behaviour, rng, env.wrist_range)
        episodes.append(record_episode(env, policy, job["steps"], reset_seed))

    root = Path(job["root"])
    tmp = root / (job["name"] + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lengths = [len(e["frames"]) for e in episodes]
    arrays = {k: np.concatenate([e[k] for e in episodes]) for k in ("frames", "actions", "proprio", "states")}
    arrays["episode_starts"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    arrays["target_pos"] = np.stack([e["target_pos"] for e in episodes]).astype(np.float64)
    files = {}
    for key, array in arrays.items():
        path = tmp / f"{key}.npy"
        with open(path, "wb") as f:
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())
        files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    fsync_dir(tmp)
    final = root / job["name"]
    shutil.rmtree(final, ignore_errors=True)  # only ever a leftover the manifest does not list
    tmp.rename(final)
    fsync_dir(root)
    shapes = {k: {"dtype": str(v.dtype), "row_shape": list(v.shape[1:])} for k, v in arrays.items()}
    return {
        "name": job["name"],
        "episodes": [job["first"], job["last"]],
        "rows": int(sum(lengths)),
        "files": files,
        "shapes": shapes,
    }


# ----------------------------------------------------------------------------- parent side
def _versions() -> dict:
    import envs

    return {
        "mujoco": envs.MUJOCO_VERSION,
        "dm_control": envs.DM_CONTROL_VERSION,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def collect(env, data, cache_root: str = "cache", progress: bool = True) -> Path:
    """Collects (or finishes collecting) the dataset of `env` (EnvConfig) and `data` (DataConfig);
    returns its folder."""
    from tqdm import tqdm

    if data.steps * env.action_repeat > env.time_limit:
        raise ValueError(
            f"steps * env.action_repeat = {data.steps * env.action_repeat} control steps exceeds "
            f"env.time_limit = {env.time_limit}; lower steps or raise env.time_limit"
        )
    root = dataset_dir(env, data, cache_root)
    ident = identity(env, data)
    if (root / MANIFEST).exists():
        manifest = read_manifest(root)
        if manifest["identity"] != ident:
            raise DatasetError(
                f"{root} holds a dataset collected with a different config; choose another `out=` "
                "or delete that folder"
            )
        if manifest["complete"]:
            print(f"dataset already complete at {root}")
            return root
    else:
        root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "identity": ident,
            "env": {"name": env.name, "config": ident["env"]},
            "collect": {k: ident[k] for k in ("episodes", "steps", "seed", "episodes_per_shard", "behaviour")},
            "versions": _versions(),
            "arrays": {},
            "shards": [],
            "complete": False,
        }
        write_json_atomic(root / MANIFEST, manifest)

    done = {s["name"] for s in manifest["shards"]}
    jobs = []
    for first in range(0, data.episodes, data.episodes_per_shard):
        name = f"shard-{first // data.episodes_per_shard:05d}"
        if name not in done:
            last = min(first + data.episodes_per_shard, data.episodes)
            jobs.append(
                {"env": ident["env"], "behaviour": ident["behaviour"], "steps": data.steps, "seed": data.seed,
                 "first": first, "last": last, "name": name, "root": str(root)}
            )
    finished = sum(s["episodes"][1] - s["episodes"][0] for s in manifest["shards"])
    bar = tqdm(total=data.episodes, initial=finished, unit="ep", desc="collect", disable=not progress)

    def record(entry: dict) -> None:
        manifest["arrays"] = entry.pop("shapes")
        manifest["shards"] = sorted(manifest["shards"] + [entry], key=lambda s: s["name"])
        write_json_atomic(root / MANIFEST, manifest)
        bar.update(entry["episodes"][1] - entry["episodes"][0])

    try:
        if data.workers <= 1:
            for job in jobs:
                record(collect_shard(job))
        else:
            # spawn, not fork: each worker makes its own GL context; forked EGL state is unusable.
            with mp.get_context("spawn").Pool(data.workers) as pool:
                for entry in pool.imap_unordered(collect_shard, jobs):
                    record(entry)
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted; {len(manifest['shards'])} shards are safe in {root}. Run the same command to resume.")
        raise
    bar.close()
    manifest["complete"] = True
    write_json_atomic(root / MANIFEST, manifest)
    return root


def _register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="collect_schema", node=CollectConfig)


def main() -> None:
    import hydra
    from omegaconf import DictConfig

    _register_configs()

    @hydra.main(version_base="1.3", config_path="../configs", config_name="collect")
    def run(cfg: DictConfig) -> None:
        root = collect(cfg.env, cfg, cfg.cache_root)
        print(f"dataset: {root}")

    run()


if __name__ == "__main__":
    sys.exit(main())
