"""A collection split by shard ranges across processes or machines, and the merge of its parts.

    python -m agent.collect env=<name> data.episodes=800 shard_range=0:80     # machine A
    python -m agent.collect env=<name> data.episodes=800 shard_range=80:160   # machine B
    python -m agent.collect env=<name> data.episodes=800 merge=true           # once both are in one folder

A part writes its shards (shard-XXXXX/, as an unsplit collection does) and its own manifest,
part-AAAAA-BBBBB.json (shard indices A to B, B excluded), into the dataset folder; it resumes
like a whole collection. Shard i holds episodes [i * episodes_per_shard, ...) and every episode
draws its randomness from (seed, index) alone, so any split writes the same bytes as one
collection. The merge checks every part (same config, same library versions, every shard present
once, every file's size and sha256) and writes the manifest.json of the whole, the one an
unsplit collection writes, then deletes the part manifests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from world_model.dataset import MANIFEST, PART_GLOB, SCHEMA_VERSION, DatasetError, sha256_file, write_json_atomic

# what every part of one dataset must agree on besides its shards (the identity is checked first)
SHARED = ("env", "collect", "versions", "arrays")


def shard_count(data) -> int:
    """Shards of a dataset with data.episodes in runs of data.episodes_per_shard."""
    return math.ceil(data.episodes / data.episodes_per_shard)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def part_name(shards: tuple[int, int]) -> str:
    """The manifest file of the part that collects shards [first, last)."""
    return f"part-{shards[0]:05d}-{shards[1]:05d}.json"


def parse_shard_range(text: str, data) -> tuple[int, int]:
    """'A:B' -> (A, B): shard indices A to B (B excluded), within the dataset's shards."""
    count = shard_count(data)
    usage = (f"shard_range={text}: give A:B with 0 <= A < B <= {count} (data.episodes={data.episodes} in "
             f"shards of data.episodes_per_shard={data.episodes_per_shard} make {count} shards)")
    first, sep, last = str(text).partition(":")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        raise ValueError(usage)
    first, last = int(first), int(last)
    if not 0 <= first < last <= count:
        raise ValueError(usage)
    return first, last


def read_part(path: Path, ident: dict) -> dict:
    """A part manifest (or an unfinished manifest.json) of this dataset's config."""
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); delete it and collect its shard range again") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"{path} has schema version {manifest.get('schema_version')}, this code writes "
                           f"{SCHEMA_VERSION}; delete it and collect its shard range again")
    if manifest.get("identity") != ident:
        raise DatasetError(f"{path} was collected with another config ({_differences(manifest.get('identity'), ident)}); "
                           "pass the overrides it was collected with, or choose another data.out")
    return manifest


def _differences(a, b) -> str:
    """'seed: 1 vs 0, steps: ...': the top-level keys where two dicts differ, with both values."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return f"{a} vs {b}"
    return ", ".join(f"{k}: {a.get(k)} vs {b.get(k)}" for k in sorted({*a, *b}) if a.get(k) != b.get(k))


def _spans(indices: list[int]) -> str:
    """[3, 4, 5, 9] -> '3:6, 9:10' (ranges as shard_range takes them)."""
    spans, start = [], None
    for i, index in enumerate(indices):
        if start is None:
            start = index
        if i + 1 == len(indices) or indices[i + 1] != index + 1:
            spans.append(f"{start}:{index + 1}")
            start = None
    return ", ".join(spans)


def _verify_files(root: Path, shard: dict, index: int) -> None:
    """Every file of shard `index` has the size and sha256 its part manifest lists."""
    hint = f"collect it again with shard_range={index}:{index + 1}"
    for filename, meta in shard["files"].items():
        path = root / shard["name"] / filename
        if not path.is_file():
            raise DatasetError(f"dataset file {path} is missing; copy it from the machine that collected it, or {hint}")
        size = path.stat().st_size
        if size != meta["bytes"]:
            raise DatasetError(f"dataset file {path} has {size} bytes but its part manifest says {meta['bytes']}: "
                               f"it was truncated or changed; copy it again, or {hint}")
        digest = sha256_file(path)
        if digest != meta["sha256"]:
            raise DatasetError(f"dataset file {path} has sha256 {digest[:12]}... but its part manifest says "
                               f"{meta['sha256'][:12]}...: the file was changed; copy it again, or {hint}")


def merge(root: Path, ident: dict, data) -> Path:
    """Checks the parts in `root` and writes the manifest of the whole dataset; returns root.

    The parts are the part-*.json files and, when present, an unfinished manifest.json (shards an
    unsplit collection already wrote). Their shards may overlap when their entries agree."""
    root = Path(root)
    if (root / MANIFEST).exists():
        whole = read_part(root / MANIFEST, ident)
        if whole.get("complete"):
            print(f"dataset already complete at {root}")
            return root
    paths = sorted(root.glob(PART_GLOB)) if root.is_dir() else []
    if (root / MANIFEST).exists():
        paths.append(root / MANIFEST)
    if not paths:
        raise DatasetError(f"no part of a split collection in {root} ({PART_GLOB}); collect the parts first with "
                           "`python -m agent.collect <the same overrides> shard_range=A:B`, into this folder")
    sources = {path: read_part(path, ident) for path in paths}
    shards: dict[str, dict] = {}
    first = None  # the source whose env, versions and arrays the merged manifest takes
    for path, manifest in sources.items():
        if not manifest["shards"]:
            continue
        if first is None:
            first = (path, manifest)
        for key in SHARED:
            if manifest[key] != first[1][key]:
                raise DatasetError(
                    f"{path.name} and {first[0].name} in {root} differ in their {key} "
                    f"({_differences(manifest[key], first[1][key])}); collect every part with the same code and "
                    "library versions"
                )
        for shard in manifest["shards"]:
            if shard["name"] in shards and shards[shard["name"]] != shard:
                raise DatasetError(f"{path.name} and another part in {root} list different files for {shard['name']}; "
                                   "delete both parts' manifests and that shard, and collect its range again")
            shards[shard["name"]] = shard
    count = shard_count(data)
    missing = [i for i in range(count) if shard_name(i) not in shards]
    if missing:
        raise DatasetError(
            f"shards {_spans(missing)} of {root} are in no part; collect them with `python -m agent.collect "
            "<the same overrides> shard_range=A:B` for each of those ranges (into this folder), then merge again"
        )
    for index in range(count):
        shard = shards[shard_name(index)]
        span = [index * data.episodes_per_shard, min((index + 1) * data.episodes_per_shard, data.episodes)]
        if shard["episodes"] != span:
            raise DatasetError(f"{shard['name']} in a part of {root} holds episodes {shard['episodes']}, not {span}; "
                               "delete that part's manifest and collect its range again")
        _verify_files(root, shard, index)
    # the manifest an unsplit collection writes: the same keys in the same order
    whole = {key: value for key, value in first[1].items() if key != "part"}
    whole["shards"] = [shards[shard_name(i)] for i in range(count)]
    whole["complete"] = True
    write_json_atomic(root / MANIFEST, whole)
    for path in paths:
        if path.name != MANIFEST:
            path.unlink()
    print(f"merged {len(paths)} part(s), {count} shards, into {root}; every file matches its sha256")
    return root
