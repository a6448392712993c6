"""Collects offline agent video: `python -m agent.collect env=<name> data.episodes=200 data.workers=2`.

Collection is where an agent meets an environment: each env family's behaviour policy acts
(envs/base.py), and the frames, actions, states and probe targets go into the world model's
dataset format (world_model/dataset.py), whose shapes and per-episode extras come from the env.
Episodes are split into shards; worker processes each render whole shards (rendering is the
bottleneck). Every episode's randomness derives from (seed, episode index) alone, so the data do
not depend on the number of workers, and an interrupted collection resumes by collecting only
the shards the manifest does not list yet. `shard_range=A:B` collects only shards A to B (B
excluded), so that processes or machines can split a collection; `merge=true` then checks the
parts and writes the manifest of the whole (agent/parts.py).
"""

from __future__ import annotations

import io
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

from agent.parts import merge, parse_shard_range, part_name, read_part, shard_count, shard_name
from world_model.atomic import WRITE_HINTS, check_writable, fsync_dir
from world_model.cache_key import cache_key
from world_model.cache_lock import building
from world_model.cli import SettingError
from world_model.dataset import (
    EXTRA_PREFIX,
    MANIFEST,
    SCHEMA_VERSION,
    DatasetError,
    read_manifest,
    sha256_file,
    write_json_atomic,
)
from world_model.plain import plain


def env_settings(env: Any) -> dict:
    """The keyword arguments of envs.make from an env config node (dict or DictConfig):
    {"name": ..., **settings}; every other key is the env class's own constructor argument."""
    settings = {k: v for k, v in plain(env).items() if k != "_target_"}
    return {"name": settings.pop("name"), **settings}


@dataclass
class DataConfig:
    """What to record: everything that changes the data, plus how to record it (workers)."""

    behaviour: dict[str, Any] = field(default_factory=dict)
    """Settings of the env's behaviour policy (its family's own; {} = the family's defaults)."""
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
class CollectConfig:
    """`python -m agent.collect` settings."""

    env: Any = field(default_factory=dict)
    """The environment the video is recorded in (configs/env; any constructor argument of its class)."""
    data: DataConfig = field(default_factory=DataConfig)
    """What to record (configs/data)."""
    cache_root: str = "cache"
    """Folder under which datasets are cached, keyed by their config."""
    shard_range: str | None = None
    """"A:B": collect only shards A to B (B excluded) as one part of a split collection; null: all."""
    merge: bool = False
    """Check the parts of a split collection in the dataset folder and write the manifest of the whole."""


def check_data_settings(data) -> None:
    """The sizes of `data` (DataConfig, or a config node with its keys), each refused in one line
    (SettingError) before anything is collected; the behaviour's settings are its env family's to check."""
    for name in ("episodes", "steps", "episodes_per_shard", "workers"):
        if getattr(data, name) < 1:
            raise SettingError(f"data.{name}={getattr(data, name)}: it must be at least 1")
    if data.seed < 0:  # numpy's seed sequence takes no negative number: the first shard would fail
        raise SettingError(f"data.seed={data.seed}: it must be at least 0")


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
    key = cache_key(identity(env, data))
    return Path(cache_root) / "datasets" / f"{env_settings(env)['name']}-{key}"


def write_failure(path: Path, err: OSError) -> DatasetError:
    """One line for an OSError while writing `path` of a dataset: the file, the cause, what to do."""
    hint = WRITE_HINTS.get(err.errno, "fix that")
    return DatasetError(
        f"collection stopped: cannot write {path} ({err.strerror or err}); {hint}, or point cache_root (or data.out) "
        "at another disk, then run the same command again: it resumes after the last whole shard"
    )


def _save_manifest(path: Path, manifest: dict) -> None:
    """The manifest (or a part's) at `path`; a failed write is one line naming it."""
    try:
        write_json_atomic(path, manifest)
    except OSError as err:
        raise write_failure(path, err) from err


def _write_npy(path: Path, array: np.ndarray) -> dict:
    """Writes one shard file, durably; returns its manifest entry. Serialised in memory first:
    numpy writing to a file reports a short write as "N requested and M written", without the
    errno that says why."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


# ----------------------------------------------------------------------------- worker side
_ENV_CACHE: dict = {}


def _env_for(settings: dict):
    import envs

    key = json.dumps(settings, sort_keys=True)
    if key not in _ENV_CACHE:
        for old in _ENV_CACHE.values():
            old.close()  # close before making another renderer (a collected one breaks EGL)
        _ENV_CACHE.clear()
        _ENV_CACHE[key] = envs.make(**settings)
    return _ENV_CACHE[key]


def record_episode(env, policy, steps: int, reset_seed: int) -> dict[str, Any]:
    """Runs one episode of the behaviour policy; returns frames [T+1, H, W, 3], actions [T+1, A],
    proprio [T+1, P], states [T+1, S], probe [T+1, K] (T = steps) and the env's extras."""
    obs, _ = env.reset(seed=reset_seed)
    extras = env.episode_extras()
    frames, proprio, states, probe, actions = [obs["pixels"]], [obs["proprio"]], [env.get_sim_state()], [
        env.probe_targets()], []
    for t in range(steps):
        action = policy.act(obs)
        obs, _, _, truncated, _ = env.step(action)
        if truncated and t < steps - 1:
            raise ValueError(f"{env.name} ended its episode after {t + 1} of data.steps={steps} env steps "
                             "(its time limit); lower data.steps or raise env.time_limit")
        actions.append(action)
        frames.append(obs["pixels"])
        proprio.append(obs["proprio"])
        states.append(env.get_sim_state())
        probe.append(env.probe_targets())
    actions.append(np.zeros_like(actions[0]))  # no action follows an episode's last frame
    return {
        "frames": np.stack(frames),
        "actions": np.stack(actions).astype(np.float32),
        "proprio": np.stack(proprio).astype(np.float32),
        "states": np.stack(states).astype(np.float64),
        "probe": np.stack(probe).astype(np.float32),
        "extras": extras,
    }


def collect_shard(job: dict) -> dict:
    """Records episodes [first, last) into <root>/<name> and returns the shard's manifest entry."""
    env = _env_for(job["env"])
    episodes = []
    for index in range(job["first"], job["last"]):
        rng = np.random.default_rng([job["seed"], index])
        reset_seed = int(rng.integers(2**31 - 1))
        policy = env.behaviour_policy(rng, **job["behaviour"])
        episodes.append(record_episode(env, policy, job["steps"], reset_seed))
    return write_shard(Path(job["root"]), job["name"], episodes, job["first"])


def write_shard(root: Path, name: str, episodes: list[dict], first: int) -> dict:
    """Writes episodes (record_episode's dicts) as the shard <root>/<name>, whose first episode is
    number `first` of the dataset, and returns its manifest entry (with "shapes", which the caller
    moves into the manifest's "arrays")."""
    tmp, final = root / (name + ".tmp"), root / name
    lengths = [len(e["frames"]) for e in episodes]
    arrays = {k: np.concatenate([e[k] for e in episodes]) for k in ("frames", "actions", "proprio", "states", "probe")}
    arrays["episode_starts"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    for key in episodes[0]["extras"]:
        arrays[EXTRA_PREFIX + key] = np.stack([np.asarray(e["extras"][key]) for e in episodes])
    files, writing = {}, tmp
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for key, array in arrays.items():
            writing = tmp / f"{key}.npy"
            files[writing.name] = _write_npy(writing, array)
        writing = final
        fsync_dir(tmp)
        shutil.rmtree(final, ignore_errors=True)  # only ever a leftover the manifest does not list
        tmp.rename(final)
        fsync_dir(root)
    except OSError as err:
        # on a full disk the partial shard's space is what the user needs back; the manifest
        # never listed it, so a rerun collects it again
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failure(writing, err) from err
    shapes = {k: {"dtype": str(v.dtype), "row_shape": list(v.shape[1:])} for k, v in arrays.items()}
    return {
        "name": name,
        "episodes": [first, first + len(episodes)],
        "rows": int(sum(lengths)),
        "files": files,
        "shapes": shapes,
    }


# ----------------------------------------------------------------------------- parent side
def versions() -> dict:
    import envs

    return {
        **envs.SIMULATOR_VERSIONS,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def env_facts(settings: dict) -> dict:
    """What the dataset records about its env, from one instance (no rendering)."""
    import envs

    env = envs.make(**settings)
    try:
        space = env.action_space
        return {
            "name": env.name,
            "config": settings,
            "action_repeat": int(env.action_repeat),
            "action_low": space.low.tolist(),
            "action_high": space.high.tolist(),
            "probe_groups": {k: list(v) for k, v in env.probe_groups.items()},
        }
    finally:
        env.close()


def collect(
    env, data, cache_root: str = "cache", progress: bool = True, shards: tuple[int, int] | None = None
) -> Path:
    """Collects (or finishes collecting) the dataset of `env` (an env config node) and `data`
    (DataConfig); returns its folder. shards=(A, B) collects only shards A to B (B excluded), one
    part of a split collection with its own manifest (agent/parts.py); merge the parts after.
    Processes collecting the same dataset (or part) take turns (world_model/cache_lock.py)."""
    check_data_settings(data)
    root = dataset_dir(env, data, cache_root)
    ident = identity(env, data)
    so_far = _finished(root, ident, shards)
    if so_far is None:
        return root
    # a bad env setting or MUJOCO_GL fails here, before anything is written
    facts = env_facts(ident["env"]) if not so_far else None
    try:  # before the lock file beside it, so that a cache nobody can write says so about the dataset's folder
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_failure(root, err) from err
    # one process collects a dataset (or a part) at a time; another waits, then finds it complete
    where = root if shards is None else root.with_name(f"{root.name}.{Path(part_name(shards)).stem}")
    with building(where, "the dataset" if shards is None else f"{part_name(shards)} of the dataset"):
        return _collect(data, root, ident, shards, facts, progress)


def _finished(root: Path, ident: dict, shards: tuple[int, int] | None) -> dict | None:
    """None when the dataset (or the part `shards`) at root is complete (said in one line); else its
    manifest so far, {} when there is none. A folder of another config is refused."""
    if shards is not None and (root / MANIFEST).exists():
        whole = read_part(root / MANIFEST, ident)  # a part of another config's folder is refused
        if whole["complete"]:
            print(f"dataset already complete at {root}; no part of it needs collecting")
            return None
    manifest_path = root / (MANIFEST if shards is None else part_name(shards))
    if not manifest_path.exists():
        return {}
    manifest = read_manifest(root) if shards is None else read_part(manifest_path, ident)
    if manifest["identity"] != ident:
        raise DatasetError(
            f"{manifest_path} belongs to a dataset collected with a different config; choose another `out=` "
            "or delete that folder"
        )
    if manifest["complete"]:
        print(f"{'dataset' if shards is None else part_name(shards)} already complete at {root}")
        return None
    return manifest


def _collect(data, root: Path, ident: dict, shards: tuple[int, int] | None, facts: dict | None,
             progress: bool) -> Path:
    """collect() once this process holds the dataset's lock: what is still missing. facts: what the
    manifest records about the env (env_facts), when there was no manifest yet."""
    from tqdm import tqdm

    manifest = _finished(root, ident, shards)  # again: another process may have finished it meanwhile
    if manifest is None:
        return root
    manifest_path = root / (MANIFEST if shards is None else part_name(shards))
    if not manifest:
        facts = facts or env_facts(ident["env"])
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "identity": ident,
            "env": facts,
            "collect": {k: ident[k] for k in ("episodes", "steps", "seed", "episodes_per_shard", "behaviour")},
            "versions": versions(),
            "arrays": {},
            "shards": [],
            "complete": False,
        }
        if shards is not None:
            manifest["part"] = {"shards": list(shards)}  # dropped by the merge
        _save_manifest(manifest_path, manifest)

    # an unfinished dataset in a folder that cannot be written would fail at its first shard
    check_writable(root, "the dataset's shards", "point cache_root (or data.out) at a folder you can write to")
    done = {s["name"] for s in manifest["shards"]}
    jobs = []
    for index in range(*(shards or (0, shard_count(data)))):
        name = shard_name(index)
        if name not in done:
            first = index * data.episodes_per_shard
            last = min(first + data.episodes_per_shard, data.episodes)
            jobs.append(
                {"env": ident["env"], "behaviour": ident["behaviour"], "steps": data.steps, "seed": data.seed,
                 "first": first, "last": last, "name": name, "root": str(root)}
            )
    finished = sum(s["episodes"][1] - s["episodes"][0] for s in manifest["shards"])
    total = sum(job["last"] - job["first"] for job in jobs) + finished
    bar = tqdm(total=total, initial=finished, unit="ep", desc="collect", disable=not progress)

    def record(entry: dict) -> None:
        manifest["arrays"] = entry.pop("shapes")
        manifest["shards"] = sorted(manifest["shards"] + [entry], key=lambda s: s["name"])
        _save_manifest(manifest_path, manifest)
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
    finally:
        bar.close()  # idempotent; an error then goes on a line of its own, not after the bar
    manifest["complete"] = True
    _save_manifest(manifest_path, manifest)
    if shards is not None:
        print(f"{part_name(shards)} complete in {root}; once every part is there, write the dataset's "
              "manifest with the same command and merge=true instead of shard_range")
    return root


def _register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="collect_schema", node=CollectConfig)


def main() -> None:
    import hydra
    from omegaconf import DictConfig

    from world_model.cli import one_line_errors

    _register_configs()

    @hydra.main(version_base="1.3", config_path="../configs", config_name="collect")
    def run(cfg: DictConfig) -> None:
        if cfg.merge:
            if cfg.shard_range is not None:
                raise SystemExit("error: pass shard_range=A:B to collect a part, or merge=true to merge the parts, "
                                 "not both")
            with one_line_errors(DatasetError):
                root = merge(dataset_dir(cfg.env, cfg.data, cfg.cache_root), identity(cfg.env, cfg.data), cfg.data)
        else:
            shards = None if cfg.shard_range is None else parse_shard_range(cfg.shard_range, cfg.data)
            with one_line_errors(DatasetError):
                root = collect(cfg.env, cfg.data, cfg.cache_root, shards=shards)
        print(f"dataset: {root}")

    run()


if __name__ == "__main__":
    sys.exit(main())
