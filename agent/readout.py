"""A trainable readout: the env's probe targets (envs/base.py probe_targets, e.g. positions and an
angle) read off a representation by a small MLP, so a cost can compare plans with their goal in the
numbers a success rule is written in.

Why: the goal energy weighs every latent number alike, so it weighs the parts of a scene by how
many tokens they change, not by what the goal asks (docs/NOTEBOOK.md, "What limits Push-T `push`":
the energy counts the agent twice as much as the block). The readout is fitted afterwards on the
world model's detached latents of the training video and the targets its dataset recorded with
every frame (the world model is not changed). With `rollout` > 0 it also learns from the world
model's own open-loop predictions of the training episodes, paired with the targets of the frames
they predict, so it reads what the planner will feed it (predicted latents), not only encoded ones.
The goal image is read the same way: planning still starts from pixels.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from world_model.cache_key import cache_key
from world_model.fitted import check_at_least_one, check_positive, load_fitted, save_fitted
from world_model.latents import EpisodeLatents, episode_actions, episode_probe

WEIGHTS, MANIFEST = "readout.safetensors", "readout.json"


@dataclass
class ReadoutConfig:
    """The probe-target readout and its training (on detached latents of a trained world model)."""

    hidden: int = 256
    """Width of the two hidden layers."""
    steps: int = 3000
    """Optimiser steps."""
    batch_size: int = 512
    """(latent, targets) rows per step."""
    lr: float = 1.0e-3
    """AdamW learning rate (cosine-decayed to 0 over the steps)."""
    rollout: int = 3
    """Decisions of the world model's own open-loop predictions of the training episodes added as
    training rows (each paired with the targets of the frame it predicts); 0 = encoded frames only."""
    start_every: int = 2
    """Frames between the starts of those predicted rollouts within an episode."""
    held_out_fraction: float = 0.1
    """Last episodes kept out of training (the same split as the world model's)."""
    seed: int = 0
    """Seeds the initialisation and the row sampling."""

    def __post_init__(self):
        check_at_least_one(self, "readout", ("hidden", "steps", "batch_size", "start_every"))
        check_positive(self, "readout", ("lr",))
        if self.rollout < 0:
            raise ValueError(f"readout.rollout must be 0 or more decisions, got {self.rollout}")
        if not 0.0 < self.held_out_fraction < 1.0:
            raise ValueError(f"readout.held_out_fraction={self.held_out_fraction}: it must lie in (0, 1), because the "
                             "readout's held-out statistics use the last episodes; 0.1 is the default")


class ProbeReadout(nn.Module):
    """MLP from a representation [..., D] to the K probe targets, in standardised units (each target
    minus its training mean, over its training standard deviation), so targets of any unit weigh alike."""

    def __init__(self, latent_dim: int, targets: int, cfg: ReadoutConfig):
        super().__init__()
        self.cfg = cfg
        for name, size in (("z_mean", latent_dim), ("z_std", latent_dim), ("y_mean", targets), ("y_std", targets)):
            self.register_buffer(name, torch.zeros(size) if name.endswith("mean") else torch.ones(size))
        self.net = nn.Sequential(
            nn.Linear(latent_dim, cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, targets),
        )

    def forward(self, z: Tensor) -> Tensor:
        """z [..., D] -> standardised targets [..., K]."""
        return self.net((z - self.z_mean) / self.z_std)

    def targets(self, z: Tensor) -> Tensor:
        """z [..., D] -> the targets in their own units [..., K]."""
        return self(z) * self.y_std + self.y_mean


def predicted_rows(wm, z: Tensor, actions: Tensor, y: Tensor, rollout: int, every: int) -> tuple[Tensor, Tensor]:
    """The world model's open-loop predictions of episodes, as training rows.

    z [E, T, D] encoded latents, actions [E, T, A] (row t leads from frame t to t + 1), y [E, T, K]
    targets -> (predicted latents [R, D], the targets of the frames they predict [R, K]), from
    rollouts of `rollout` decisions started every `every` frames."""
    k = wm.cfg.history
    starts = range(k - 1, z.shape[1] - rollout, every)
    zs, ys = [], []
    with torch.no_grad():
        for s in starts:
            # the K history latents end at frame s; actions s .. s + rollout - 1 lead to frames s + 1 ..
            pred = wm.rollout(z[:, s - k + 1:s + 1], actions[:, s:s + rollout], actions[:, s - k + 1:s])  # [E, H, D]
            zs.append(pred.reshape(-1, z.shape[-1]))
            ys.append(y[:, s + 1:s + 1 + rollout].reshape(-1, y.shape[-1]))
    if not zs:
        raise ValueError(f"episodes of {z.shape[1]} frames are too short for a {k}-frame history and a "
                         f"{rollout}-decision readout rollout; set readout.rollout=0")
    return torch.cat(zs), torch.cat(ys)


def fit_readout(x: Tensor, y: Tensor, cfg: ReadoutConfig, progress: bool = True) -> ProbeReadout:
    """Fits a ProbeReadout to rows x [N, D] -> y [N, K] (device follows them); returns it in eval mode."""
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    readout = ProbeReadout(x.shape[-1], y.shape[-1], cfg).to(x.device)
    readout.z_mean.copy_(x.mean(0))
    readout.z_std.copy_(x.std(0) + 1e-4)  # a dead latent dimension must not divide by zero
    readout.y_mean.copy_(y.mean(0))
    readout.y_std.copy_(y.std(0) + 1e-6)
    target = (y - readout.y_mean) / readout.y_std  # [N, K]
    opt = torch.optim.AdamW(readout.net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in tqdm(range(cfg.steps), desc="readout", unit="step", disable=not progress):
        rows = torch.randint(len(x), (cfg.batch_size,), generator=g).to(x.device)
        loss = (readout(x[rows]) - target[rows]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    return readout.eval()


def errors(readout: ProbeReadout, z: Tensor, y: Tensor, groups: dict[str, list[str]]) -> dict[str, float]:
    """Median error per probe group on rows z [N, D], y [N, K], in the targets' units: the Euclidean
    distance over the group's targets (a position's error in its own units; a (cos, sin) pair's is
    a chord, reported in degrees of the angle it encodes)."""
    with torch.no_grad():
        diff = readout.targets(z) - y  # [N, K]
    out, first = {}, 0
    for group, names in groups.items():
        d = diff[:, first:first + len(names)].norm(dim=-1).median().item()
        if len(names) == 2 and names[0].endswith("cos") and names[1].endswith("sin"):
            out[f"{group}_deg"] = math.degrees(2 * math.asin(min(d / 2, 1.0)))
        else:
            out[group] = d
        first += len(names)
    return out


def train_readout(wm, dataset, cfg: ReadoutConfig, device: torch.device, progress: bool = True,
                  latents: EpisodeLatents | None = None) -> tuple[ProbeReadout, dict]:
    """Encodes the dataset with the frozen world model `wm` (or takes its latents from `latents`,
    shared with the other fitted modules), fits a ProbeReadout to the probe targets the dataset
    recorded with every frame (the world model's train / held-out episode split) and returns it on
    `device` with statistics: median held-out errors per probe group on encoded latents and on the
    world model's predictions 1 .. rollout decisions ahead."""
    from world_model.windows import split_episodes

    start = time.perf_counter()
    groups = dataset.manifest["env"].get("probe_groups")
    if not groups:
        raise ValueError(f"dataset {dataset.root} records no probe targets (its env declares no probe_groups), "
                         "so there is nothing to read out; set configurator.<goal kind>.readout_weight=0")
    train_eps, held_eps = split_episodes(dataset.num_episodes, cfg.held_out_fraction)
    latents = latents or EpisodeLatents(wm, dataset, device)
    z_train, z_held = latents(train_eps), latents(held_eps)  # [E, T, D] each
    y_train, y_held = episode_probe(dataset, train_eps, device), episode_probe(dataset, held_eps, device)  # [E, T, K]
    encode_s = time.perf_counter() - start
    x, y = z_train.reshape(-1, z_train.shape[-1]), y_train.reshape(-1, y_train.shape[-1])  # [E*T, D], [E*T, K]
    if cfg.rollout:
        xp, yp = predicted_rows(wm, z_train, episode_actions(dataset, train_eps, device), y_train, cfg.rollout,
                                cfg.start_every)
        x, y = torch.cat([x, xp]), torch.cat([y, yp])
    readout = fit_readout(x, y, cfg, progress)
    stats = {"encoded": errors(readout, z_held.reshape(-1, z_held.shape[-1]), y_held.reshape(-1, y_held.shape[-1]),
                               groups)}
    if cfg.rollout:
        a_held = episode_actions(dataset, held_eps, device)
        for h in range(cfg.rollout):
            xp, yp = predicted_rows(wm, z_held, a_held, y_held, h + 1, cfg.start_every)
            per_row = xp.reshape(-1, h + 1, xp.shape[-1])[:, -1], yp.reshape(-1, h + 1, yp.shape[-1])[:, -1]
            stats[f"predicted_{h + 1}"] = errors(readout, *per_row, groups)
    stats.update(groups=groups, rows=len(x), encode_s=encode_s, train_s=time.perf_counter() - start - encode_s)
    return readout, stats


def readout_key(weights_sha256: str, dataset_name: str, cfg: ReadoutConfig) -> str:
    """Cache key: the world model's weights (by their recorded hash), the dataset and the config."""
    identity = {"weights": weights_sha256, "dataset": dataset_name, "readout": dataclasses.asdict(cfg)}
    return cache_key(identity)


def save_readout(folder: Path, readout: ProbeReadout, stats: dict) -> None:
    """The weights, then the manifest that marks the readout complete."""
    save_fitted(folder, WEIGHTS, MANIFEST, readout,
                {"config": dataclasses.asdict(readout.cfg), "latent_dim": readout.z_mean.shape[0],
                 "targets": readout.y_mean.shape[0], "stats": stats}, "the readout")


def load_readout(folder: Path) -> ProbeReadout:
    """Loads a saved readout (eval mode, CPU); refuses files it cannot verify."""
    manifest, state = load_fitted(folder, WEIGHTS, MANIFEST, "the readout")
    readout = ProbeReadout(manifest["latent_dim"], manifest["targets"], ReadoutConfig(**manifest["config"]))
    readout.load_state_dict(state)
    return readout.eval()
