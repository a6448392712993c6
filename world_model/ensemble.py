"""An ensemble of predictors on the frozen representation: where they disagree with the world model
about a plan, the world model is probably wrong there, and a planner can be told to keep away.

Each member is a Predictor (world_model/predictor.py) trained afterwards on detached latents of the
frozen encoder (the world model is not changed), from its own initialisation and its own draw of
training windows. A plan's disagreement at step h is the members' mean squared distance (averaged
over the D numbers, the goal energy's units) between their own open-loop rollout of the plan and
the world model's: with the world model counted as one more member, how far the others land from
what it imagines, an estimate of its squared error there. Cached by config like the critic.
Measured in docs/NOTEBOOK.md, "Does the planner know what its model does not know?".
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

WEIGHTS, MANIFEST = "ensemble.safetensors", "ensemble.json"


@dataclass
class EnsembleConfig:
    """The predictor ensemble and its training (on detached latents of a trained world model)."""

    members: int = 2
    """M, predictors besides the world model's own (each adds one predictor rollout per plan)."""
    width: int = 128
    """Each member's transformer width."""
    depth: int = 2
    """Each member's transformer blocks."""
    heads: int = 4
    """Each member's attention heads."""
    steps: int = 2000
    """Optimiser steps (every member takes one per step, on its own windows)."""
    batch_size: int = 256
    """Windows per member per step."""
    rollout: int = 3
    """Steps each member is trained to predict from a window, feeding its own predictions back (as
    it rolls plans out when planning)."""
    lr: float = 1.0e-3
    """AdamW learning rate."""
    held_out_fraction: float = 0.1
    """Last episodes kept out of training (the same split as the world model's)."""
    seed: int = 0
    """Member m is initialised and draws its windows from seed + m."""

    def __post_init__(self):
        check_at_least_one(self, "ensemble", ("members", "width", "depth", "heads", "steps", "batch_size", "rollout"))
        check_positive(self, "ensemble", ("lr",))
        if self.width % self.heads:
            raise ValueError(f"ensemble.width={self.width} is not divisible by ensemble.heads={self.heads}; change one")
        check_held_out_fraction(self, "ensemble")


def spread_from(members: Tensor, z: Tensor) -> Tensor:
    """The members' mean squared distance (averaged over D, the goal energy's units) from the world
    model's prediction: members [M, ..., D], z [..., D] -> [...]. What ModelDisagreement charges and
    what a video's spread panel writes in its caption."""
    return (members - z).square().mean(-1).mean(0)


class PredictorEnsemble(nn.Module):
    """M predictors of the world model's shape, each rolling plans out on its own (`rollouts`), and
    their mean squared distance from the world model's rollout of the same plans (`disagreement`)."""

    def __init__(self, latent_dim: int, action_dim: int, history: int, cfg: EnsembleConfig):
        super().__init__()
        self.cfg, self.latent_dim, self.action_dim, self.history = cfg, latent_dim, action_dim, history
        self.members = nn.ModuleList()
        for m in range(cfg.members):
            with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
                torch.manual_seed(cfg.seed + m)  # each member its own initialisation
                member = Predictor(latent_dim, action_dim, cfg.width, cfg.depth, cfg.heads, history)
                # the world model's predictor starts as copy-last (zero output layer), which would start
                # every member at the same prediction; a small random output layer spreads them from step 0
                nn.init.normal_(member.out.weight, std=0.02)
            self.members.append(member)

    def rollouts(self, start: Tensor, past: Tensor, actions: Tensor) -> Tensor:
        """Each member's own open-loop rollout of the plans: start [B, K, D] history latents, past
        [B, K-1, A] (past[:, t] led from start[:, t] to start[:, t+1]), actions [B, N, H, A]
        -> [M, B, N, H, D]."""
        return torch.stack([member.rollout_candidates(start, past, actions) for member in self.members])

    def disagreement(self, start: Tensor, past: Tensor, z: Tensor, actions: Tensor) -> Tensor:
        """The world model's predicted latents z [B, N, H, D] of N plans (actions [B, N, H, A] from
        start [B, K, D], past [B, K-1, A]) -> [B, N, H]: the members' mean squared distance from z."""
        return spread_from(self.rollouts(start, past, actions), z)


def latent_windows(z: Tensor, actions: Tensor, k: int, size: int, g: torch.Generator, rollout: int = 1,
                   starts: Tensor | None = None):
    """Random windows of true latents: z [b, K, D], actions [b, K - 1 + R, A] (R = rollout),
    targets [b, R, D] (the R latents after the window). starts: [M, 2] (episode, first frame) of the
    windows to draw from, with replacement; None: any window of z."""
    if starts is None:
        e_count, t_count, _ = z.shape
        e = torch.randint(e_count, (size,), generator=g).to(z.device)
        t = torch.randint(t_count - k - rollout + 1, (size,), generator=g).to(z.device)
    else:
        e, t = starts[torch.randint(len(starts), (size,), generator=g).to(starts.device)].unbind(1)
    steps = torch.arange(k + rollout, device=z.device)
    zs = z[e[:, None], t[:, None] + steps]  # [b, K + R, D]
    return zs[:, :k], actions[e[:, None], t[:, None] + steps[:-1]], zs[:, k:]


def held_out_stats(ensemble: PredictorEnsemble, z: Tensor, actions: Tensor, windows: int = 4096) -> dict:
    """Each member's one-step mean squared error on held-out windows of true latents, against
    copy-last."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        zw, aw, target = latent_windows(z, actions, ensemble.history, windows, g)
        errors = [(member(zw, aw)[:, -1] - target[:, 0]).square().mean().item() for member in ensemble.members]
        copy = (zw[:, -1] - target[:, 0]).square().mean().item()
    return {"held_out_error": errors, "held_out_copy_last": copy}


def fit_ensemble(z_train: Tensor, a_train: Tensor, z_held: Tensor, a_held: Tensor, history: int,
                 cfg: EnsembleConfig, progress: bool = True) -> tuple[PredictorEnsemble, dict]:
    """Fits the ensemble to latent episodes z [E, T, D] and their actions [E, T, A] (device follows
    them); returns it in eval mode and held-out statistics (held_out_stats)."""
    from tqdm import tqdm

    if z_train.shape[1] < history + cfg.rollout:
        raise ValueError(f"episodes of {z_train.shape[1]} frames are too short for a {history}-frame history and "
                         f"ensemble.rollout={cfg.rollout}; lower it")
    model = PredictorEnsemble(z_train.shape[-1], a_train.shape[-1], history, cfg).to(z_train.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    streams = [torch.Generator().manual_seed(cfg.seed + m) for m in range(cfg.members)]  # each member its own data order
    for _ in tqdm(range(cfg.steps), desc="predictor ensemble", unit="step", disable=not progress):
        loss = 0.0
        for member, g in zip(model.members, streams):
            zw, aw, target = latent_windows(z_train, a_train, history, cfg.batch_size, g, cfg.rollout)
            # members share no weights, so one summed loss trains each on its own windows
            loss = loss + (member.rollout(zw, aw, cfg.rollout) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    model.eval()
    return model, held_out_stats(model, z_held, a_held)


def train_ensemble(wm, dataset, cfg: EnsembleConfig, device: torch.device, progress: bool = True,
                   latents: EpisodeLatents | None = None) -> tuple[PredictorEnsemble, dict]:
    """Encodes the dataset with the frozen world model `wm` and fits the ensemble on it (the world
    model's train / held-out episode split). Returns it on `device` and statistics."""
    start = time.perf_counter()
    latents = latents or EpisodeLatents(wm, dataset, device)  # shared with the other fitted modules when given
    z_train, a_train, z_held, a_held = split_latents(latents, dataset, cfg.held_out_fraction, device)
    encode_s = time.perf_counter() - start
    model, stats = fit_ensemble(z_train, a_train, z_held, a_held, wm.cfg.history, cfg, progress)
    stats.update(encode_s=encode_s, train_s=time.perf_counter() - start - encode_s)
    return model, stats


def ensemble_key(weights_sha256: str, dataset_name: str, cfg: EnsembleConfig) -> str:
    """Cache key: the world model's weights (by their recorded hash), the dataset and the config."""
    identity = {"weights": weights_sha256, "dataset": dataset_name, "ensemble": dataclasses.asdict(cfg)}
    return cache_key(identity)


def save_ensemble(folder: Path, model: PredictorEnsemble, stats: dict) -> None:
    """The weights, then the manifest that marks the ensemble complete."""
    save_fitted(folder, WEIGHTS, MANIFEST, model, {"config": dataclasses.asdict(model.cfg),
                                                   "latent_dim": model.latent_dim, "action_dim": model.action_dim,
                                                   "history": model.history, "stats": stats},
                "the predictor ensemble")


def load_ensemble(folder: Path) -> PredictorEnsemble:
    """Loads a saved ensemble (eval mode, CPU); refuses files it cannot verify."""
    manifest, state = load_fitted(folder, WEIGHTS, MANIFEST, "the predictor ensemble")
    model = PredictorEnsemble(manifest["latent_dim"], manifest["action_dim"], manifest["history"],
                              EnsembleConfig(**manifest["config"]))
    model.load_state_dict(state)
    return model.eval()
