"""Offline agent video on disk: memory-mapped arrays in shards, described by a manifest.

Layout of a dataset folder (shapes and extras come from the env that recorded it):
    manifest.json             schema version, env (name, settings, action bounds, probe names) and
                              collection config, library versions, array shapes and dtypes, and
                              per shard its files' sizes and sha256
    shard-00000/              one shard = a run of whole episodes, written once, never changed
        frames.npy            uint8   [n, H, W, 3]  frame after each step (row 0 of an episode: reset)
        actions.npy           float32 [n, A]        action applied after frame i (0 on an episode's last row)
        proprio.npy           float32 [n, P]        the env's low-dimensional state vector at frame i
        states.npy            float64 [n, S]        the full simulator state at frame i
        probe.npy             float32 [n, K]        the env's probe targets at frame i
        episode_starts.npy    int64   [e + 1]       row offsets of the shard's episodes
        extra_<name>.npy      [e, ...]              per-episode extras of the env (e.g. a target position)
A shard folder appears by an atomic rename once all its files are on disk, and the manifest is
replaced atomically after each shard, so an interrupted collection leaves only whole shards.
A collection split by shard ranges writes, instead of manifest.json, one part-AAAAA-BBBBB.json per
part (the same fields for its shards A to B); merging the parts writes manifest.json (agent/parts.py).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from world_model.atomic import write_bytes_atomic

# 2: env-agnostic (probe targets and per-episode extras from the env, full simulator states).
SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
PART_GLOB = "part-*.json"  # manifests of the parts of a split collection, until they are merged
STEP_ARRAYS = ("frames", "actions", "proprio", "states", "probe")
EXTRA_PREFIX = "extra_"


class DatasetError(RuntimeError):
    """The dataset on disk is missing, incomplete, or does not match its manifest."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: dict) -> None:
    """Writes JSON crash-safely (temporary file, fsync, rename)."""
    write_bytes_atomic(path, json.dumps(data, indent=1).encode())


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.exists() and any(Path(root).glob(PART_GLOB)):
        raise DatasetError(
            f"{root} holds parts of a split collection ({PART_GLOB}) but no {MANIFEST}; merge them with "
            "`python -m agent.collect <the overrides they were collected with> merge=true`"
        )
    if not path.exists():
        raise DatasetError(
            f"no dataset at {root}: {MANIFEST} is missing; collect one with "
            "`python -m agent.collect env=<name>`"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); delete {root} and collect it again") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(
            f"{path} has schema version {manifest.get('schema_version')}, this code reads {SCHEMA_VERSION}; "
            f"delete {root} and collect it again"
        )
    return manifest


@dataclass
class Episode:
    """One episode's rows (memory-mapped views; copy before writing)."""

    frames: np.ndarray  # uint8 [T+1, H, W, 3]
    actions: np.ndarray  # float32 [T+1, A]; actions[t] leads from frame t to t+1, the last row is 0
    proprio: np.ndarray  # float32 [T+1, P]
    states: np.ndarray  # float64 [T+1, S]
    probe: np.ndarray  # float32 [T+1, K]
    extras: dict  # name -> the env's per-episode array

    def __len__(self) -> int:
        return len(self.frames)


class Dataset:
    """Reads a collected dataset by memory map, after checking every file's size and sha256
    against the manifest (about 1 s per GB).

    Every reader hashes: a size check alone let one flipped byte through (an episode length of
    about 2.8e14 frames was accepted), so there is no cheaper mode.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if not self.manifest.get("complete"):
            done = sum(s["episodes"][1] - s["episodes"][0] for s in self.manifest["shards"])
            raise DatasetError(
                f"dataset at {self.root} is incomplete ({done} of {self.manifest['collect']['episodes']} "
                "episodes); run the same collect command again to finish it"
            )
        self._shards = []  # per shard: dict name -> memmap
        self._first_episode = []
        for shard in self.manifest["shards"]:
            arrays = {}
            for filename, meta in shard["files"].items():
                path = self.root / shard["name"] / filename
                self._check_file(path, meta)
                arrays[filename.removesuffix(".npy")] = np.load(path, mmap_mode="r")
            self._shards.append(arrays)
            self._first_episode.append(shard["episodes"][0])
        lengths = [np.diff(s["episode_starts"]) for s in self._shards]
        self.episode_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)

    def _check_file(self, path: Path, meta: dict) -> None:
        hint = f"delete {self.root} and collect it again"
        if not path.exists():
            raise DatasetError(f"dataset file {path} is missing; {hint}")
        size = path.stat().st_size
        if size != meta["bytes"]:
            raise DatasetError(
                f"dataset file {path} has {size} bytes but its manifest says {meta['bytes']}: "
                f"it was truncated or changed; {hint}"
            )
        digest = sha256_file(path)
        if digest != meta["sha256"]:
            raise DatasetError(
                f"dataset file {path} has sha256 {digest[:12]}... but its manifest says "
                f"{meta['sha256'][:12]}...: the file was changed; {hint}"
            )

    @property
    def num_episodes(self) -> int:
        return len(self.episode_lengths)

    @property
    def image_size(self) -> int:
        return int(self.manifest["arrays"]["frames"]["row_shape"][0])

    @property
    def action_dim(self) -> int:
        return int(self.manifest["arrays"]["actions"]["row_shape"][0])

    @property
    def env_name(self) -> str:
        return self.manifest["env"]["name"]

    @property
    def probe_groups(self) -> dict[str, list[str]]:
        """Probe target names in the order of the probe array, grouped as the env declared them."""
        return self.manifest["env"]["probe_groups"]

    def episode(self, index: int) -> Episode:
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"episode {index} out of range [0, {self.num_episodes})")
        s = bisect.bisect_right(self._first_episode, index) - 1
        shard = self._shards[s]
        local = index - self._first_episode[s]
        start, end = shard["episode_starts"][local], shard["episode_starts"][local + 1]
        return Episode(
            frames=shard["frames"][start:end],
            actions=shard["actions"][start:end],
            proprio=shard["proprio"][start:end],
            states=shard["states"][start:end],
            probe=shard["probe"][start:end],
            extras={k.removeprefix(EXTRA_PREFIX): np.asarray(v[local]) for k, v in shard.items()
                    if k.startswith(EXTRA_PREFIX)},
        )
