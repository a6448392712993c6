"""Starting a training run from another model's weights: `python -m world_model.train dataset=B
init=<checkpoint of a model trained on A>` (fine-tuning, and the transfer measurement of
docs/NOTEBOOK.md, "Transfer to a held-out env family").

Every tensor of the new model takes the source's value, except the predictor's first action layer,
whose input is the action code (world_model/action_code.py) and so differs between a shared model
and a single-env one. That layer is mapped column by column: the columns of the new env's own
action numbers are copied, and its env code column (a shared target) or its bias (a single-env
target) takes the source's embedding of the same env when the source was trained on it, else the
mean of the source's env embeddings (a neutral start for an env the source has never seen).
The loss's inverse-dynamics head starts fresh: it predicts the coded action, whose size differs.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import torch

from world_model.action_code import code_column
from world_model.checkpoint import WEIGHTS, CheckpointError, load, read_manifest
from world_model.model import SHARED_FIELDS, WorldModel, WorldModelConfig

ACTION_LAYER = "predictor.action.0"  # nn.Linear(action_dim, width): the layer that reads the action code
# the settings that shape the weights other than the action layer's: WorldModelConfig's, less the action code's
ARCHITECTURE = tuple(f.name for f in fields(WorldModelConfig) if f.name not in ("action_dim", *SHARED_FIELDS))


def _env_columns(cfg) -> tuple[int, dict[str, int]]:
    """(A_max, env name -> column of its one-hot code) of a model config; a single-env model has
    no code columns."""
    if cfg.envs is None:
        return cfg.action_dim, {}
    dims = list(cfg.env_action_dims)
    return max(dims), {name: code_column(i, dims) for i, name in enumerate(cfg.envs)}


@torch.no_grad()
def _map_action_layer(target: WorldModel, source: WorldModel, target_envs: list[str]) -> str:
    """Sets the target's action layer from the source's as the module docstring says; returns how
    each target env's code was started, in words."""
    src_w, src_b = source.predictor.action[0].weight, source.predictor.action[0].bias  # [width, A_src], [width]
    layer = target.predictor.action[0]
    src_widest, src_codes = _env_columns(source.cfg)
    tgt_widest, tgt_codes = _env_columns(target.cfg)
    own = min(src_widest, tgt_widest)
    layer.weight.zero_()
    layer.weight[:, :own] = src_w[:, :own]  # [width, A]: the action numbers, which every env pads alike
    layer.bias.copy_(src_b)
    # a single-env source has no code columns: its one env's embedding is already in its bias
    mean_code = src_w[:, list(src_codes.values())].mean(dim=1) if src_codes else torch.zeros_like(src_b)  # [width]
    started = []
    for name in target_envs:
        seen = name in src_codes
        code = src_w[:, src_codes[name]] if seen else mean_code  # [width]
        how = "its own embedding" if seen else "the mean embedding (an env it was not trained on)"
        started.append(f"{name}: {how if src_codes else 'the source bias (a single-env source)'}")
        if tgt_codes:
            layer.weight[:, tgt_codes[name]] = code
        else:  # a single-env target has no code input: the env's embedding is a constant, folded into the bias
            layer.bias.add_(code)
    return "; ".join(started)


def source_identity(path: str | Path) -> dict:
    """What a run started from `path` records in its identity (and so in its run folder's name):
    the sha256 of the source's weights, so that two sources give two runs and a moved one the same."""
    return {"weights_sha256": read_manifest(path)["files"][WEIGHTS]["sha256"]}


def warm_start(target: WorldModel, path: str | Path, target_envs: list[str]) -> str:
    """Copies the weights of the checkpoint at `path` into `target` (freshly built, not yet
    trained) and returns one line saying what was copied.

    Args:
        target: the new run's model; its envs are `target_envs` (one name for a single-env model)
        path: a world model checkpoint folder (latest/ or best/)
        target_envs: the env names of the new run's datasets, in the order of its one-hot codes
    Raises:
        CheckpointError: the checkpoint is not a world model of the same architecture (frame size,
            representation, widths and depths), in one line that says which setting differs.
    """
    source = load(path)
    src_state, tgt_state = source.state_dict(), target.state_dict()
    skip = {f"{ACTION_LAYER}.weight", f"{ACTION_LAYER}.bias"}
    differ = [k for k in tgt_state if k not in skip and (k not in src_state or src_state[k].shape != tgt_state[k].shape)]
    if differ or set(src_state) != set(tgt_state):
        which = ", ".join(f"{f}={getattr(source.cfg, f)} there, {getattr(target.cfg, f)} here"
                          for f in ARCHITECTURE if getattr(source.cfg, f) != getattr(target.cfg, f))
        raise CheckpointError(f"init={path} is a world model of another architecture ({which or differ[:3]}); "
                              "train with its world_model settings (and frames of its size) or start from scratch")
    device = next(target.parameters()).device
    target.load_state_dict({k: v.to(device) for k, v in src_state.items() if k not in skip}, strict=False)
    codes = _map_action_layer(target, source.to(device), target_envs)
    trained_on = ", ".join(source.cfg.envs) if source.cfg.envs else "one env"
    return f"weights from {path} (trained on {trained_on}); env codes: {codes}"
