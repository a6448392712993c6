"""A module fitted after the world model (critic, level-2 predictor, decoder, landmark graph) as a folder:
safetensors weights and a JSON manifest that records their sha256 and is written last, so its
presence marks the folder complete."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

from world_model.atomic import WriteError, write_bytes_atomic
from world_model.checkpoint import CheckpointError


def check_at_least_one(config, section: str, names: tuple[str, ...]) -> None:
    """A fitted module's config check: each of `names` (counts and sizes) is at least 1, else one
    ValueError naming `section`.<name> (the config group it is set in)."""
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{section}.{name} must be at least 1, got {getattr(config, name)}")


def check_positive(config, section: str, names: tuple[str, ...]) -> None:
    """A fitted module's config check: each of `names` (rates, scales) is a finite number above 0,
    else one ValueError naming `section`.<name>; NaN is refused too."""
    for name in names:
        value = getattr(config, name)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{section}.{name} must be a finite number above 0, got {value}")


def check_held_out_fraction(config, section: str) -> None:
    """A fitted module's config check: `held_out_fraction` (the last episodes kept out) lies in (0, 1),
    else one ValueError naming `section`.held_out_fraction."""
    if not 0 < config.held_out_fraction < 1:
        raise ValueError(f"{section}.held_out_fraction must be in (0, 1), got {config.held_out_fraction}")


def save_fitted(folder: Path, weights_name: str, manifest_name: str, module: nn.Module, manifest: dict,
                what: str) -> None:
    """Writes module's state dict to folder/weights_name, then `manifest` plus the weights' sha256
    to folder/manifest_name. A failed write (full disk) raises WriteError, one line that says the
    next run fits `what` again."""
    folder = Path(folder)
    weights = safetensors_save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    manifest = {**manifest, "sha256": hashlib.sha256(weights).hexdigest()}
    again = f"run the same command again: {what} is fitted again"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(folder, err, then=again) from err
    try:
        write_bytes_atomic(folder / weights_name, weights)
        write_bytes_atomic(folder / manifest_name, json.dumps(manifest, indent=1).encode())  # last: complete
    except WriteError as err:
        raise WriteError(err.filename, err, then=again) from err


def read_fitted_manifest(folder: Path, manifest_name: str, what: str) -> dict:
    """The manifest of a fitted folder; CheckpointError (one line) when it cannot be read."""
    try:
        return json.loads((Path(folder) / manifest_name).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {what} in {folder} ({e}); delete the folder to train it again") from e


def load_fitted(folder: Path, weights_name: str, manifest_name: str, what: str) -> tuple[dict, dict[str, Tensor]]:
    """(manifest, state dict on the CPU) of a fitted folder; refuses weights whose sha256 is not the
    recorded one, with one line that says what to delete."""
    folder = Path(folder)
    manifest = read_fitted_manifest(folder, manifest_name, what)
    try:
        data = (folder / weights_name).read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {what} in {folder} ({e}); delete the folder to train it again") from e
    if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        raise CheckpointError(f"{folder / weights_name} does not match its recorded sha256; delete {folder} to train "
                              "it again")
    return manifest, safetensors_load(data)
