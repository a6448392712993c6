"""A trainable critic: how many env steps apart two representations are.

Why: with spatial tokens the goal energy is flat once the arm no longer overlaps its goal pose
(benchmarks/energy_landscape.py: steepest descent on it reaches the goal from 14% of
starts), so a 5-decision planner cannot tell which way to turn for a far goal. The critic embeds a
representation so that Euclidean distance behaves like a reach distance: one env step of the
video moves the embedding by at most 1, and otherwise states of the same episode are pushed as far
apart as that allows (a quasimetric-style objective, learned from the video alone: no rewards, no
simulator states, no negatives across episodes). Trained afterwards on detached latents of the frozen
encoder; the world model is not changed.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from world_model.cache_key import cache_key
from world_model.fitted import check_at_least_one, check_positive, load_fitted, save_fitted
from world_model.latents import EpisodeLatents

WEIGHTS, MANIFEST = "critic.safetensors", "critic.json"


@dataclass
class CriticConfig:
    """The reach-distance critic and its training (on detached latents of a trained world model)."""

    dim: int = 32
    """Size of the embedding whose Euclidean distance is the critic's estimate."""
    hidden: int = 256
    """Width of the two hidden layers."""
    steps: int = 3000
    """Optimiser steps."""
    batch_size: int = 512
    """Pairs of each kind (one-step transitions, random same-episode pairs) per step."""
    lr: float = 1.0e-3
    """AdamW learning rate."""
    cap: float = 20.0
    """Distances beyond this stop being pushed apart (keeps the objective bounded)."""
    step_penalty: float = 1000.0
    """Weight of the squared excess when one env step moves the embedding by more than 1."""
    held_out_fraction: float = 0.1
    """Last episodes kept out of training (the same split as the world model's)."""
    seed: int = 0
    """Seeds the initialisation and the pair sampling."""

    def __post_init__(self):
        check_at_least_one(self, "critic", ("dim", "hidden", "steps", "batch_size"))
        check_positive(self, "critic", ("lr", "cap"))
        if not 0.0 < self.held_out_fraction < 1.0:
            # 0 left no held-out episode to score (torch.stack of nothing), 1 nothing to train on
            raise ValueError(
                f"critic.held_out_fraction={self.held_out_fraction}: it must lie in (0, 1), because the critic's "
                "held-out statistics use the last episodes; 0.1 is the default"
            )


class ReachCritic(nn.Module):
    """MLP embedding of a representation; `distance` is the critic's reach estimate."""

    def __init__(self, latent_dim: int, cfg: CriticConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("std", torch.ones(latent_dim))
        self.net = nn.Sequential(
            nn.Linear(latent_dim, cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.dim),
        )

    def embed(self, z: Tensor) -> Tensor:
        """z [..., D] -> [..., dim]"""
        return self.net((z - self.mean) / self.std)

    def distance(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """z_a, z_b [..., D] (broadcastable) -> [...]: estimated env steps between them."""
        return (self.embed(z_a) - self.embed(z_b)).norm(dim=-1)


def _pair_losses(critic: ReachCritic, z: Tensor, cfg: CriticConfig, g: torch.Generator) -> dict[str, Tensor]:
    """z [E, T, D]: one batch of transitions and random same-episode pairs."""
    e_count, t_count, _ = z.shape
    b, dev = cfg.batch_size, z.device
    e = torch.randint(e_count, (b,), generator=g).to(dev)
    t = torch.randint(t_count - 1, (b,), generator=g).to(dev)
    i = torch.randint(t_count, (b,), generator=g).to(dev)
    j = torch.randint(t_count, (b,), generator=g).to(dev)
    step = critic.distance(z[e, t], z[e, t + 1])  # [b]
    spread = critic.distance(z[e, i], z[e, j])  # [b]
    return {
        "loss": -spread.clamp(max=cfg.cap).mean() + cfg.step_penalty * torch.relu(step - 1).square().mean(),
        "step": step.mean(),
        "violations": (step > 1.05).float().mean(),
        "spread": spread.mean(),
    }


def fit_critic(z_train: Tensor, z_held: Tensor, cfg: CriticConfig, progress: bool = True) -> tuple[ReachCritic, dict]:
    """Fits a ReachCritic to latent episodes z_train [E, T, D] (device follows them); returns it
    in eval mode and statistics on z_held [E', T, D]."""
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    critic = ReachCritic(z_train.shape[-1], cfg).to(z_train.device)
    flat = z_train.reshape(-1, z_train.shape[-1])  # [E*T, D]
    critic.mean.copy_(flat.mean(0))
    critic.std.copy_(flat.std(0) + 1e-4)  # a dead latent dimension must not divide by zero
    opt = torch.optim.AdamW(critic.net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in tqdm(range(cfg.steps), desc="critic", unit="step", disable=not progress):
        losses = _pair_losses(critic, z_train, cfg, g)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
    critic.eval()
    with torch.no_grad():
        held = _pair_losses(critic, z_held, dataclasses.replace(cfg, batch_size=4096), torch.Generator().manual_seed(1))
    return critic, {f"held_out_{k}": float(v) for k, v in held.items()}


def train_critic(wm, dataset, cfg: CriticConfig, device: torch.device, progress: bool = True,
                 latents: EpisodeLatents | None = None) -> tuple[ReachCritic, dict]:
    """Encodes the dataset with the frozen world model `wm` (or takes its latents from `latents`,
    shared with the other fitted modules) and fits a ReachCritic to it (the world model's train /
    held-out episode split). Returns the critic on `device` and statistics."""
    from world_model.windows import split_episodes

    start = time.perf_counter()
    train_eps, held_eps = split_episodes(dataset.num_episodes, cfg.held_out_fraction)
    latents = latents or EpisodeLatents(wm, dataset, device)
    z_train, z_held = latents(train_eps), latents(held_eps)  # [E, T, D] each
    encode_s = time.perf_counter() - start
    critic, stats = fit_critic(z_train, z_held, cfg, progress)
    stats.update(encode_s=encode_s, train_s=time.perf_counter() - start - encode_s)
    return critic, stats


def critic_key(weights_sha256: str, dataset_name: str, cfg: CriticConfig) -> str:
    """Cache key: the world model's weights (by their recorded hash), the dataset and the config."""
    identity = {"weights": weights_sha256, "dataset": dataset_name, "critic": dataclasses.asdict(cfg)}
    return cache_key(identity)


def save_critic(folder: Path, critic: ReachCritic, stats: dict) -> None:
    """The weights, then the manifest that marks the critic complete; a failed write (full disk)
    raises WriteError, and the critic is fitted again by the next run."""
    save_fitted(folder, WEIGHTS, MANIFEST, critic,
                {"config": dataclasses.asdict(critic.cfg), "latent_dim": critic.mean.shape[0], "stats": stats}, "the critic")


def load_critic(folder: Path) -> ReachCritic:
    """Loads a saved critic (eval mode, CPU); refuses files it cannot verify."""
    manifest, state = load_fitted(folder, WEIGHTS, MANIFEST, "the critic")
    critic = ReachCritic(manifest["latent_dim"], CriticConfig(**manifest["config"]))
    critic.load_state_dict(state)
    return critic.eval()