"""A pixel decoder for the frozen representation: what a latent looks like, so videos can show
what the world model imagines.

It is trained afterwards on detached latents of the frozen encoder and never changes the world
model; the planner never sees it. Back-propagating a pixel loss into the encoder would make it keep
detail that planning does not need (DINO-WM found a decoder loss hurts planning), so the encoder is
run under no_grad and the decoder learns from its output alone. Cached by config like the critic.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from world_model.cache_key import cache_key
from world_model.encoder import GRID, stem_strides
from world_model.fitted import (
    check_at_least_one,
    check_held_out_fraction,
    check_positive,
    load_fitted,
    read_fitted_manifest,
    save_fitted,
)
from world_model.latents import EpisodeLatents, episode_actions
from world_model.windows import split_episodes

WEIGHTS, MANIFEST = "decoder.safetensors", "decoder.json"


@dataclass
class DecoderConfig:
    """The pixel decoder and its training (on detached latents of a trained world model)."""

    width: int = 96
    """Channels at the 8x8 grid; halved per upsampling stage."""
    steps: int = 1500
    """Optimiser steps."""
    batch_size: int = 32
    """Frames per step."""
    lr: float = 2.0e-3
    """AdamW peak learning rate (cosine decay to zero)."""
    episodes: int = 200
    """Training episodes encoded (the first of the training split): the decoder needs far fewer
    frames than the world model, and encoding every episode would double the time."""
    horizon: int = 5
    """Decisions of the world model's rollout of recorded actions whose decoded frames are scored."""
    eval_windows: int = 256
    """Held-out (episode, start) pairs the reconstruction and the decoded predictions are scored on."""
    held_out_fraction: float = 0.1
    """Last episodes kept out of training (the same split as the world model's)."""
    seed: int = 0
    """Seeds the initialisation, the sampling and the scored windows."""

    def __post_init__(self):
        check_at_least_one(self, "decoder", ("width", "steps", "batch_size", "episodes", "horizon", "eval_windows"))
        check_positive(self, "decoder", ("lr",))
        check_held_out_fraction(self, "decoder")


class _Up(nn.Module):
    """Upsampling transposed conv (kernel = stride: the map grows exactly by `stride`) then a
    residual 3x3 conv; GroupNorm + GELU after each. The encoder's _Stage, mirrored."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        groups = 8 if c_out % 8 == 0 else 1
        self.up = nn.Sequential(nn.ConvTranspose2d(c_in, c_out, stride, stride=stride), nn.GroupNorm(groups, c_out),
                                nn.GELU())
        self.refine = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C_in, H, W] -> [B, C_out, stride * H, stride * W]"""
        x = self.up(x)
        return x + self.refine(x)


class Decoder(nn.Module):
    """z [..., D] -> pixels [..., H, W, 3] in [0, 1].

    A token grid (`grid` = (cells per side, numbers per cell)) is read as an 8x8 feature map, so
    each cell decodes where it sits; a pooled vector is first mapped linearly onto that map.
    """

    def __init__(self, latent_dim: int, image_size: int, grid: tuple[int, int] | None, cfg: DecoderConfig):
        super().__init__()
        self.cfg, self.latent_dim, self.image_size, self.grid = cfg, latent_dim, image_size, grid
        if grid is not None and (grid[0] != GRID or grid[0] * grid[0] * grid[1] != latent_dim):
            raise ValueError(f"grid {grid} does not describe a {latent_dim}-d token grid of {GRID}x{GRID} cells")
        # standardise each latent number (token values have any scale the training left them at)
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("std", torch.ones(latent_dim))
        if grid is not None:
            self.inp = nn.Conv2d(grid[1], cfg.width, 1)  # per cell: its numbers -> width channels
        else:
            self.inp = nn.Linear(latent_dim, GRID * GRID * cfg.width)
        strides = stem_strides(image_size)[::-1]  # the encoder's strides, last first
        stages, c_in = [], cfg.width
        for stride in strides[:-1]:
            stages.append(_Up(c_in, max(c_in // 2, 8), stride))
            c_in = max(c_in // 2, 8)
        self.stages = nn.Sequential(*stages)
        # The full-resolution stage paints pixels straight from the map below it: convolutions at
        # full resolution would cost most of the decoder's time. Overlapping kernels (stride + 2,
        # as the encoder's downsampling) keep the patch seams smooth.
        self.out = nn.ConvTranspose2d(c_in, 3, strides[-1] + 2, stride=strides[-1], padding=1)

    def forward(self, z: Tensor) -> Tensor:
        """z [..., D] -> [..., H, W, 3] floats in [0, 1]"""
        lead = z.shape[:-1]
        x = ((z - self.mean) / self.std).reshape(-1, self.latent_dim)  # [L, D]
        if self.grid is not None:
            x = x.reshape(-1, GRID, GRID, self.grid[1]).permute(0, 3, 1, 2)  # [L, C, 8, 8], cells row-major as encoded
            x = self.inp(x)  # [L, width, 8, 8]
        else:
            x = self.inp(x).reshape(-1, self.cfg.width, GRID, GRID)  # [L, width, 8, 8]
        x = torch.sigmoid(self.out(self.stages(x)))  # [L, 3, H, W]
        return x.permute(0, 2, 3, 1).reshape(*lead, self.image_size, self.image_size, 3)

    @torch.no_grad()
    def decode_uint8(self, z: Tensor) -> np.ndarray:
        """z [N, D] -> uint8 [N, H, W, 3] on the CPU, for videos."""
        return (self(z) * 255).round().to(torch.uint8).cpu().numpy()


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error on [0, 1] pixels."""
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


def _pixels(frames: np.ndarray, device: torch.device) -> Tensor:
    """uint8 [..., H, W, 3] -> floats in [0, 1] on `device`."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).float() / 255.0


def _frames_at(dataset, episodes: np.ndarray, e: np.ndarray, t: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3]: frame t[i] of episode episodes[e[i]] (read from the memory map)."""
    return np.stack([dataset.episode(int(episodes[i])).frames[j] for i, j in zip(e, t)])


def fit_decoder(decoder: Decoder, z: Tensor, dataset, episodes: np.ndarray, cfg: DecoderConfig,
                progress: bool = True) -> list[float]:
    """Trains `decoder` (in place, on z's device) to map latents z [E, T, D] of `episodes` back to
    their frames; returns the training loss every 100 steps."""
    from tqdm import tqdm

    flat = z.reshape(-1, z.shape[-1])  # [E*T, D]
    decoder.mean.copy_(flat.mean(0))
    decoder.std.copy_(flat.std(0) + 1e-4)  # a dead latent number must not divide by zero
    opt = torch.optim.AdamW(decoder.parameters(), lr=cfg.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    losses = []
    decoder.train()
    for step in tqdm(range(cfg.steps), desc="decoder", unit="step", disable=not progress):
        e, t = rng.integers(z.shape[0], size=cfg.batch_size), rng.integers(z.shape[1], size=cfg.batch_size)
        target = _pixels(_frames_at(dataset, episodes, e, t), z.device)  # [b, H, W, 3]
        loss = (decoder(z[e, t]) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            losses.append(loss.item())
    return losses


@torch.no_grad()
def score_decoder(decoder: Decoder, wm, z: Tensor, actions: Tensor, dataset, episodes: np.ndarray,
                  cfg: DecoderConfig) -> dict:
    """Held-out errors on [0, 1] pixels (mean squared error, and PSNR of that mean):
    reconstruction of the encoded frame, and per step h = 1..horizon the decoded world-model
    rollout of the recorded actions from frame t (history t-1, t) against the real frame t+h,
    beside the error of showing frame t unchanged (copy-last: what no motion would score).
    z [E, T, D] and actions [E, T, A] are the episodes' latents and actions."""
    e_count, t_count, _ = z.shape
    h = cfg.horizon
    if t_count < h + 2:
        raise ValueError(f"held-out episodes of {t_count} frames are too short for decoder.horizon={h}; lower it")
    decoder.eval()
    rng = np.random.default_rng([cfg.seed, 1])
    e = rng.integers(e_count, size=cfg.eval_windows)
    t = rng.integers(1, t_count - h, size=cfg.eval_windows)  # history frames t-1, t exist; t+h too
    recon, pred, copy = [], [], []
    for chunk in np.array_split(np.arange(cfg.eval_windows), max(1, cfg.eval_windows // 64)):
        ec, tc = e[chunk], t[chunk]
        steps = tc[:, None] + np.arange(1, h + 1)  # [b, h]
        real = _pixels(np.stack([_frames_at(dataset, episodes, ec, steps[:, j]) for j in range(h)], 1), z.device)
        now = _pixels(_frames_at(dataset, episodes, ec, tc), z.device)  # [b, H, W, 3]
        recon.append((decoder(z[ec, tc]) - now).square().mean(dim=(1, 2, 3)))  # [b]
        copy.append((now[:, None] - real).square().mean(dim=(2, 3, 4)))  # [b, h]
        hist = torch.stack([z[ec, tc - 1], z[ec, tc]], 1)  # [b, 2, D]
        taken = actions[ec[:, None], steps - 1]  # [b, h, A]: taken[:, j] led to frame t + j + 1
        rollout = wm.rollout(hist, taken, past_actions=actions[ec, tc - 1][:, None])  # [b, h, D]
        pred.append((decoder(rollout) - real).square().mean(dim=(2, 3, 4)))  # [b, h]
    recon_mse, pred_mse = float(torch.cat(recon).mean()), torch.cat(pred).mean(0).tolist()
    return {
        "held_out_mse": recon_mse,
        "held_out_psnr": psnr(recon_mse),
        "prediction_mse": pred_mse,  # per rollout step 1..horizon (decisions)
        "prediction_psnr": [psnr(m) for m in pred_mse],
        "copy_last_mse": torch.cat(copy).mean(0).tolist(),
    }


def train_decoder(wm, dataset, cfg: DecoderConfig, device: torch.device, progress: bool = True,
                  latents: EpisodeLatents | None = None) -> tuple[Decoder, dict]:
    """Encodes dataset episodes with the frozen world model `wm` (no gradient reaches it) and fits
    a Decoder on them (the world model's train / held-out episode split). Returns it in eval mode
    on `device` and statistics: held-out errors (score_decoder), the loss curve and timings."""
    if wm.cfg.history != 2:
        raise ValueError(f"the decoded predictions are scored with a 2-frame history, the world model has "
                         f"history={wm.cfg.history}")
    start = time.perf_counter()
    train_eps, held_eps = split_episodes(dataset.num_episodes, cfg.held_out_fraction)
    train_eps = train_eps[: cfg.episodes]
    wm = wm.to(device).eval()
    latents = latents or EpisodeLatents(wm, dataset, device)  # shared with the other fitted modules when given
    z_train = latents(train_eps)  # [E, T, D], computed under no_grad
    encode_s = time.perf_counter() - start
    torch.manual_seed(cfg.seed)
    grid = (GRID, wm.cfg.token_dim) if wm.cfg.representation == "tokens" else None
    decoder = Decoder(wm.cfg.latent_dim, wm.cfg.image_size, grid, cfg).to(device)
    losses = fit_decoder(decoder, z_train, dataset, train_eps, cfg, progress)
    train_s = time.perf_counter() - start - encode_s
    z_held = latents(held_eps)
    stats = score_decoder(decoder, wm, z_held, episode_actions(dataset, held_eps, device), dataset, held_eps, cfg)
    stats.update(train_loss=losses, encode_s=encode_s, train_s=train_s, frames=int(z_train.shape[0] * z_train.shape[1]))
    return decoder.eval(), stats


def decoder_key(weights_sha256: str, dataset_name: str, cfg: DecoderConfig) -> str:
    """Cache key: the world model's weights (by their recorded hash), the dataset and the config."""
    identity = {"weights": weights_sha256, "dataset": dataset_name, "decoder": dataclasses.asdict(cfg)}
    return cache_key(identity)


def save_decoder(folder: Path, decoder: Decoder, stats: dict, weights_sha256: str) -> None:
    """Weights, then the manifest (config, sizes, the world model's weights hash, statistics):
    the manifest is written last and marks the folder complete."""
    save_fitted(folder, WEIGHTS, MANIFEST, decoder,
                {"config": dataclasses.asdict(decoder.cfg), "latent_dim": decoder.latent_dim,
                 "image_size": decoder.image_size, "grid": decoder.grid, "world_model_sha256": weights_sha256,
                 "stats": stats}, "the decoder")


def read_decoder_manifest(folder: Path) -> dict:
    return read_fitted_manifest(folder, MANIFEST, "the decoder")


def load_decoder(folder: Path) -> Decoder:
    """Loads a saved decoder (eval mode, CPU); refuses files it cannot verify."""
    manifest, state = load_fitted(folder, WEIGHTS, MANIFEST, "the decoder")
    grid = tuple(manifest["grid"]) if manifest["grid"] is not None else None
    decoder = Decoder(manifest["latent_dim"], manifest["image_size"], grid, DecoderConfig(**manifest["config"]))
    decoder.load_state_dict(state)
    return decoder.eval()