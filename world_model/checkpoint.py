"""Checkpoints as a folder: safetensors weights, a JSON manifest, and an optional training state.

    <folder>/model.safetensors   WorldModel state dict
    <folder>/training_state.pt   optimizer, scheduler, loss module (inverse-dynamics head, EMA
                                 encoder) and RNG states; torch.save of tensors and plain
                                 containers only, read back with weights_only=True
    <folder>/checkpoint.json     configs, step, and sha256 + size of each file above

A folder changes in one step: save() writes every file into a fresh sibling folder
`.<name>.tmp-<random>`, verifies it, then renames the old `<name>` to `<name>.prev` and the new
folder to `<name>`, and deletes `<name>.prev` last. A save killed at any moment (SIGKILL, full
disk) leaves a complete checkpoint at `<name>`, or at `<name>.prev` when it died between the two
renames; newest_verified() finds it and restore_newest() moves it back to `<name>`. Leftover
`.<name>.tmp-*` folders are deleted by the next save. One process saves a given `<name>` at a time.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
import pickle
import random
import secrets
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from world_model.atomic import WriteError, fsync_dir, replace_dir_atomic, write_bytes_atomic
from world_model.losses import JEPALoss, LossConfig
from world_model.model import WorldModel, WorldModelConfig, single_env_record

FORMAT = "world_model.checkpoint/1"
WEIGHTS = "model.safetensors"
TRAINING_STATE = "training_state.pt"
MANIFEST = "checkpoint.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, altered or does not match its config."""


def _file_record(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _rng_state() -> dict[str, Any]:
    # numpy's state is turned into tensors and ints because weights_only loading accepts no ndarrays
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _canonical(value: Any) -> Any:
    """A copy of a training state whose containers are all distinct objects and whose strings are
    all interned (the tensors are not copied). Pickle writes an object it has seen before as a
    back-reference, chosen by identity: an optimizer state loaded from a checkpoint has other key
    objects than a fresh one's interned literals, and was written as other bytes with the same
    content. Canonical, a resumed run's training_state.pt equals an uninterrupted run's."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        out = copy.copy(value)  # the same type, and attributes such as a state_dict's _metadata
        out.clear()
        out.update((_canonical(k), _canonical(v)) for k, v in value.items())
        if getattr(value, "__dict__", None):
            out.__dict__.update(_canonical(vars(value)))
        return out
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if type(value) is tuple:
        return tuple(_canonical(v) for v in value)
    return value


def save(
    folder: str | os.PathLike,
    model: WorldModel,
    step: int,
    loss_fn: JEPALoss | None = None,
    loss_cfg: LossConfig | None = None,
    train_cfg: Mapping[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
) -> Path:
    """Save a checkpoint folder, replacing any folder there in one step; returns the manifest path.

    The folder holds only what save writes (anything else put in it is dropped by the next save).

    Args:
        model: the world model; its cfg goes into the manifest
        step: training step reached
        loss_fn: its state (inverse-dynamics head, EMA encoder) goes into the training state
            and its cfg into the manifest unless loss_cfg is given
        train_cfg: any JSON-serialisable mapping (for OmegaConf: OmegaConf.to_container(cfg, resolve=True))
        optimizer, scheduler: saved in the training state when given
    """
    folder = Path(folder)
    if loss_cfg is None and loss_fn is not None:
        loss_cfg = loss_fn.cfg
    manifest = {
        "format": FORMAT,
        "step": int(step),
        "torch_version": torch.__version__,
        "model_config": single_env_record(dataclasses.asdict(model.cfg)),
        "loss_config": dataclasses.asdict(loss_cfg) if loss_cfg is not None else None,
        "train_config": dict(train_cfg) if train_cfg is not None else None,
        "files": {},
    }
    try:
        json.dumps(manifest)  # fail before writing anything
    except TypeError as e:
        raise ValueError(
            f"train_cfg must be JSON-serialisable ({e}); "
            "for OmegaConf pass OmegaConf.to_container(cfg, resolve=True)"
        ) from e

    # safetensors refuses non-contiguous or shared tensors; the model has none tied, so copies are exact
    files = {WEIGHTS: safetensors_save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})}

    if optimizer is not None or scheduler is not None or loss_fn is not None:
        state = {
            "step": int(step),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "loss": loss_fn.state_dict() if loss_fn is not None else None,
            "rng": _rng_state(),
        }
        buffer = io.BytesIO()
        torch.save(_canonical(state), buffer)
        files[TRAINING_STATE] = buffer.getvalue()

    manifest["files"] = {name: _file_record(data) for name, data in files.items()}
    files[MANIFEST] = json.dumps(manifest, indent=2).encode()
    _write_folder(folder, files)
    return folder / MANIFEST


def previous_of(folder: str | os.PathLike) -> Path:
    """Where save() keeps the checkpoint that `folder` held until the new one is in place."""
    folder = Path(folder)
    return folder.with_name(f"{folder.name}.prev")


def _write_folder(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write `files` into a fresh temporary sibling of `folder`, verify it, then rename it into
    place; a kill at any point leaves the old checkpoint (at `folder` or its .prev) intact."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}.tmp-*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{secrets.token_hex(4)}")
    try:
        tmp.mkdir()
    except OSError as err:
        raise WriteError(tmp, err) from err
    try:
        for name, data in files.items():  # the manifest last: it is the last key
            try:
                write_bytes_atomic(tmp / name, data)
            except WriteError as err:  # named as the file of `folder` it was to become
                raise WriteError(folder / name, err) from err
        verify(tmp)
        replace_dir_atomic(tmp, folder, previous_of(folder))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _folder(path: str | os.PathLike) -> Path:
    """The checkpoint folder meant by `path`: the folder itself, or the folder of a file in it
    (users pass model.safetensors, the file they recognise, as often as the folder)."""
    path = Path(path)
    if path.name == MANIFEST:
        return path.parent
    if path.is_file():
        if not (path.parent / MANIFEST).is_file():
            raise CheckpointError(
                f"{path} is a file and its folder holds no {MANIFEST}; pass the whole checkpoint folder "
                "written by world_model.save (weights alone cannot be verified or rebuilt)"
            )
        return path.parent
    return path


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the checkpoint folder `path` (or of the folder of a file in it)."""
    file = _folder(path) / MANIFEST
    if not file.is_file():
        raise CheckpointError(f"{file} does not exist; pass a folder written by world_model.save")
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{file} is not valid JSON ({e}); the manifest was altered or truncated, use another checkpoint"
        ) from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a {FORMAT} manifest; pass a folder written by world_model.save")
    return manifest


def _verified_bytes(folder: Path, name: str, manifest: Mapping[str, Any]) -> bytes:
    file = folder / name
    record = manifest["files"].get(name)
    if record is None:
        raise CheckpointError(f"{folder / MANIFEST} lists no {name}; this checkpoint was saved without it")
    if not file.is_file():
        raise CheckpointError(f"{file} is missing; copy the whole checkpoint folder, or use another checkpoint")
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != record["bytes"] or digest != record["sha256"]:
        raise CheckpointError(
            f"{file} has {len(data)} bytes and sha256 {digest[:12]}... but {MANIFEST} says "
            f"{record['bytes']} bytes and {record['sha256'][:12]}...; the file was changed or truncated "
            "after saving. Copy it again from the source or use another checkpoint."
        )
    return data


def verify(path: str | os.PathLike) -> dict[str, Any]:
    """Check that the manifest is readable and every file it lists has its recorded size and
    sha256; returns the manifest. Raises CheckpointError naming the first file that does not."""
    folder = _folder(path)
    manifest = read_manifest(folder)
    if not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{folder / MANIFEST} lists no files; the manifest was altered, use another checkpoint")
    for name in manifest["files"]:
        _verified_bytes(folder, name, manifest)
    return manifest


def _why_unverified(folder: Path) -> str | None:
    """None when `folder` verifies, else why not (one line)."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    try:
        verify(folder)
    except CheckpointError as e:
        return str(e)
    return None


def checkpoint_exists(folder: str | os.PathLike) -> bool:
    """Whether a save() to `folder` has happened: `folder` or its .prev exists (a save killed
    between its renames leaves only the .prev)."""
    return Path(folder).exists() or previous_of(folder).exists()


def newest_verified(folder: str | os.PathLike) -> Path | None:
    """The newest of `folder` and its .prev that verifies, or None if neither does. `folder` is
    always the newer: save() makes .prev from the folder it replaces."""
    for candidate in (Path(folder), previous_of(folder)):
        if _why_unverified(candidate) is None:
            return candidate
    return None


def restore_newest(folder: str | os.PathLike) -> str | None:
    """Make `folder` hold the newest checkpoint that verifies, so that code reading `folder`
    continues from it: when only its .prev verifies, the .prev is renamed back to `folder` and an
    unverified `folder` is kept aside as `<name>.unverified` (replacing an older one). Returns None
    when `folder` verified as it was, else a one-line note of what was done. Raises
    CheckpointError when neither verifies."""
    folder = Path(folder)
    why = _why_unverified(folder)
    if why is None:
        return None
    prev = previous_of(folder)
    prev_why = _why_unverified(prev)
    if prev_why is not None:
        raise CheckpointError(
            f"neither {folder.name}/ nor {prev.name}/ in {folder.parent} verifies ({why}; {prev_why}); "
            f"delete {folder.parent} to start over"
        )
    aside = folder.with_name(f"{folder.name}.unverified")
    kept = ""
    if folder.exists():
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(folder, aside)
        kept = f", kept as {aside.name}/"
    os.replace(prev, folder)
    fsync_dir(folder.parent)
    step = read_manifest(folder)["step"]
    return (
        f"{folder.name}/ does not verify ({why}{kept}); "
        f"using {prev.name}/ at step {step}, moved back to {folder.name}/"
    )


def load(path: str | os.PathLike) -> WorldModel:
    """Load a WorldModel from a checkpoint folder (or a file in it), verified, in eval mode on CPU.

    Raises CheckpointError naming the file when anything is missing, altered or inconsistent.
    """
    return load_with_manifest(path)[0]


def load_with_manifest(path: str | os.PathLike) -> tuple[WorldModel, dict[str, Any]]:
    """load(path), and the manifest its weights were verified against: what is keyed by the weights
    (the fitted modules' caches) reads their sha256 from it, not from the folder again, which a
    training process may have saved a newer checkpoint into meanwhile."""
    folder = _folder(path)
    manifest = read_manifest(folder)
    try:
        cfg = WorldModelConfig(**manifest["model_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"{folder / MANIFEST} holds a model_config this code cannot build ({e}); "
            "load it with the code version that saved it"
        ) from e
    data = _verified_bytes(folder, WEIGHTS, manifest)
    try:
        state = safetensors_load(data)
    except SafetensorError as e:
        raise CheckpointError(
            f"{folder / WEIGHTS} is not a readable safetensors file ({e}); use another checkpoint"
        ) from e
    model = WorldModel(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{folder / WEIGHTS} does not match the model_config in {MANIFEST} ({e}); "
            "the files come from different saves"
        ) from e
    return model.eval(), manifest


def load_training_state(
    path: str | os.PathLike,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    loss_fn: nn.Module | None = None,
    restore_rng: bool = True,
) -> int:
    """Restore the optimizer, scheduler, loss module and RNG states saved beside the weights;
    returns the step. Load the model weights first (world_model.load, then move the model and
    build the optimizer on it)."""
    folder = _folder(path)
    manifest = read_manifest(folder)
    data = _verified_bytes(folder, TRAINING_STATE, manifest)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as e:
        raise CheckpointError(
            f"{folder / TRAINING_STATE} cannot be read with weights_only=True ({e}); use another checkpoint"
        ) from e
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler), ("loss", loss_fn)):
        if target is None:
            continue
        if state[name] is None:
            raise CheckpointError(
                f"{folder / TRAINING_STATE} holds no {name} state; it was saved without one, "
                "so start that part fresh"
            )
        target.load_state_dict(state[name])
    if restore_rng:
        _set_rng_state(state["rng"])
    return int(state["step"])
