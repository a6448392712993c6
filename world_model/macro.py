"""The level-2 predictor: k decisions at once, over the same frozen representation.

A macro-action is the chunk of k primitive actions [k * A] taken from a latent; the level-2
predictor maps (z_t, chunk) to z_{t+k}, so a planner can look k times further ahead for the same
number of predictor calls. It is trained afterwards on detached latents of the frozen encoder
(the world model is not changed), on the same offline video, and cached by config like the critic.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from world_model.cache_key import cache_key
from world_model.fitted import check_at_least_one, check_held_out_fraction, check_positive, load_fitted, save_fitted
from world_model.latents import EpisodeLatents, split_latents
from world_model.predictor import Predictor

WEIGHTS, MANIFEST = "macro.safetensors", "macro.json"


@dataclass
class MacroConfig:
    """The level-2 predictor and its training (on detached latents of a trained world model)."""

    k: int = 4
    """Decisions per macro step (each `env.action_repeat` control steps)."""
    width: int = 256
    """Transformer width."""
    depth: int = 2
    """Transformer blocks."""
    heads: int = 4
    """Attention heads."""
    steps: int = 3000
    """Optimiser steps."""
    batch_size: int = 256
    """Macro transitions per step."""
    lr: float = 1.0e-3
    """AdamW learning rate."""
    rollout: int = 2
    """Macro steps trained autoregressively (each prediction fed back), so long plans stay on course."""
    held_out_fraction: float = 0.1
    """Last episodes kept out of training (the same split as the world model's)."""
    seed: int = 0
    """Seeds the initialisation and the sampling."""

    def __post_init__(self):
        check_at_least_one(self, "macro", ("k", "width", "depth", "heads", "steps", "batch_size", "rollout"))
        check_positive(self, "macro", ("lr",))
        check_held_out_fraction(self, "macro")


class MacroModel(nn.Module):
    """(z_t [B, D], macro-actions [B, H, k * A]) -> z_{t+k}, ..., z_{t+Hk} [B, H, D]."""

    def __init__(self, latent_dim: int, action_dim: int, cfg: MacroConfig):
        super().__init__()
        self.cfg, self.latent_dim, self.action_dim = cfg, latent_dim, action_dim
        self.predictor = Predictor(latent_dim, cfg.k * action_dim, cfg.width, cfg.depth, cfg.heads, history=1)

    @property
    def k(self) -> int:
        return self.cfg.k

    def rollout(self, z: Tensor, macro: Tensor) -> Tensor:
        """z [B, D], macro [B, H, k*A] -> [B, H, D]; row h follows macro-actions 0..h."""
        if macro.ndim != 3 or macro.shape[0] != z.shape[0] or macro.shape[2] != self.cfg.k * self.action_dim:
            raise ValueError(f"macro must be [B, H, k*A] = [{z.shape[0]}, H, {self.cfg.k * self.action_dim}], "
                             f"got {tuple(macro.shape)}")
        return self.predictor.rollout(z[:, None], macro, macro.shape[1])


def _batch(z: Tensor, actions: Tensor, cfg: MacroConfig, size: int, g: torch.Generator):
    """Random macro transitions: start latents [b, D], chunks [b, R, k*A], targets [b, R, D]."""
    e_count, t_count, _ = z.shape
    span = cfg.k * cfg.rollout
    e = torch.randint(e_count, (size,), generator=g).to(z.device)
    t = torch.randint(t_count - span, (size,), generator=g).to(z.device)
    steps = torch.arange(span, device=z.device)
    chunks = actions[e[:, None], t[:, None] + steps]  # [b, R*k, A]
    chunks = chunks.reshape(size, cfg.rollout, -1)  # [b, R, k*A]: each row k consecutive actions
    targets = z[e[:, None], t[:, None] + cfg.k * torch.arange(1, cfg.rollout + 1, device=z.device)]  # [b, R, D]
    return z[e, t], chunks, targets


def _errors(model: MacroModel, z: Tensor, actions: Tensor, cfg: MacroConfig, g: torch.Generator) -> dict[str, float]:
    """Held-out mean squared error per macro step, against copying the start latent."""
    with torch.no_grad():
        start, chunks, targets = _batch(z, actions, cfg, 4096, g)
        pred = model.rollout(start, chunks)
        err = (pred - targets).square().mean(-1).mean(0)  # [R]
        copy = (start[:, None] - targets).square().mean(-1).mean(0)  # [R]
    return {"held_out_error": err.tolist(), "held_out_copy_last": copy.tolist()}


def fit_macro(z_train: Tensor, a_train: Tensor, z_held: Tensor, a_held: Tensor, cfg: MacroConfig,
              progress: bool = True) -> tuple[MacroModel, dict]:
    """Fits a MacroModel to latent episodes z [E, T, D] and their actions [E, T, A] (device
    follows them); returns it in eval mode and held-out errors per macro step."""
    from tqdm import tqdm

    if z_train.shape[1] <= cfg.k * cfg.rollout:
        raise ValueError(f"episodes of {z_train.shape[1]} frames are too short for macro.k={cfg.k} x "
                         f"macro.rollout={cfg.rollout}; lower them")
    torch.manual_seed(cfg.seed)
    model = MacroModel(z_train.shape[-1], a_train.shape[-1], cfg).to(z_train.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in tqdm(range(cfg.steps), desc="level-2 predictor", unit="step", disable=not progress):
        start, chunks, targets = _batch(z_train, a_train, cfg, cfg.batch_size, g)
        loss = (model.rollout(start, chunks) - targets).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    model.eval()
    return model, _errors(model, z_held, a_held, cfg, torch.Generator().manual_seed(1))


def train_macro(wm, dataset, cfg: MacroConfig, device: torch.device, progress: bool = True,
                latents: EpisodeLatents | None = None) -> tuple[MacroModel, dict]:
    """Encodes the dataset with the frozen world model `wm` and fits the level-2 predictor on it
    (the world model's train / held-out episode split). Returns it on `device` and statistics."""
    start = time.perf_counter()
    latents = latents or EpisodeLatents(wm, dataset, device)  # shared with the other fitted modules when given
    z_train, a_train, z_held, a_held = split_latents(latents, dataset, cfg.held_out_fraction, device)
    encode_s = time.perf_counter() - start
    model, stats = fit_macro(z_train, a_train, z_held, a_held, cfg, progress)
    stats.update(encode_s=encode_s, train_s=time.perf_counter() - start - encode_s)
    return model, stats


def macro_key(weights_sha256: str, dataset_name: str, cfg: MacroConfig) -> str:
    """Cache key: the world model's weights (by their recorded hash), the dataset and the config."""
    identity = {"weights": weights_sha256, "dataset": dataset_name, "macro": dataclasses.asdict(cfg)}
    return cache_key(identity)


def save_macro(folder: Path, model: MacroModel, stats: dict) -> None:
    """The weights, then the manifest that marks the level-2 predictor complete."""
    save_fitted(folder, WEIGHTS, MANIFEST, model, {"config": dataclasses.asdict(model.cfg), "latent_dim": model.latent_dim,
                                                   "action_dim": model.action_dim, "stats": stats},
                "the level-2 predictor")


def load_macro(folder: Path) -> MacroModel:
    """Loads a saved level-2 predictor (eval mode, CPU); refuses files it cannot verify."""
    manifest, state = load_fitted(folder, WEIGHTS, MANIFEST, "the level-2 predictor")
    model = MacroModel(manifest["latent_dim"], manifest["action_dim"], MacroConfig(**manifest["config"]))
    model.load_state_dict(state)
    return model.eval()