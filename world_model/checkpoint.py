"""Checkpoints as a folder: safetensors weights, a JSON manifest, and an optional training state.

    <folder>/model.safetensors   WorldModel state dict
    <folder>/training_state.pt   optimizer, scheduler, loss module (inverse-dynamics head, EMA
                                 encoder) and RNG states; torch.save of tensors and plain
                                 containers only, read back with weights_only=True
    <folder>/checkpoint.json     configs, step, and sha256 + size of each file above

The manifest is written last, so a folder whose save was interrupted fails verification
instead of loading a mix of old and new files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from world_model.atomic import write_bytes_atomic
from world_model.losses import JEPALoss, LossConfig
from world_model.model import WorldModel, WorldModelConfig

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
    """Save a checkpoint folder (created if needed); returns the manifest path.

    Args:
        model: the world model; its cfg goes into the manifest
        step: training step reached
        loss_fn: its state (inverse-dynamics head, EMA encoder) goes into the training state
            and its cfg into the manifest unless loss_cfg is given
        train_cfg: any JSON-serialisable mapping (for OmegaConf: OmegaConf.to_container(cfg, resolve=True))
        optimizer, scheduler: saved in the training state when given
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if loss_cfg is None and loss_fn is not None:
        loss_cfg = loss_fn.cfg
    manifest = {
        "format": FORMAT,
        "step": int(step),
        "torch_version": torch.__version__,
        "model_config": dataclasses.asdict(model.cfg),
        "loss_config": dataclasses.asdict(loss_cfg) if loss_cfg is not None else None,
        "train_config": dict(train_cfg) if train_cfg is not None else None,
        "files": {},
    }
    try:
        manifest_bytes = json.dumps(manifest, indent=2).encode()  # fail before writing anything
    except TypeError as e:
        raise ValueError(
            f"train_cfg must be JSON-serialisable ({e}); "
            "for OmegaConf pass OmegaConf.to_container(cfg, resolve=True)"
        ) from e

    # safetensors refuses non-contiguous or shared tensors; the model has none tied, so copies are exact
    weights = safetensors_save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    write_bytes_atomic(folder / WEIGHTS, weights)
    manifest["files"][WEIGHTS] = _file_record(weights)

    if optimizer is not None or scheduler is not None or loss_fn is not None:
        state = {
            "step": int(step),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "loss": loss_fn.state_dict() if loss_fn is not None else None,
            "rng": _rng_state(),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_bytes_atomic(folder / TRAINING_STATE, buffer.getvalue())
        manifest["files"][TRAINING_STATE] = _file_record(buffer.getvalue())

    manifest_bytes = json.dumps(manifest, indent=2).encode()
    write_bytes_atomic(folder / MANIFEST, manifest_bytes)
    return folder / MANIFEST


def _folder(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.parent if path.name == MANIFEST else path


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the checkpoint folder `path` (or of its checkpoint.json)."""
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


def load(path: str | os.PathLike) -> WorldModel:
    """Load a WorldModel from a checkpoint folder, verified, in eval mode on CPU.

    Raises CheckpointError naming the file when anything is missing, altered or inconsistent.
    """
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
    return model.eval()


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
