"""An action prior: a goal-conditioned proposal of the next `horizon` actions, read off the frozen
world model's latents, which the planner starts its search from instead of its previous plan.

Why: the planner searches where its model is accurate and where it is not alike, and a wide search
finds plans that score well because the model is wrong about them (docs/NOTEBOOK.md, "What limits
Push-T `push`": more CEM samples succeeded less often). The prior is trained on the training video
alone, by hindsight: from the latents of two frames, the action between them and the latent of a
frame k = 1 .. `max_ahead` decisions later, it predicts the k actions the video took to get there
(goal-conditioned behaviour cloning). Its proposal is the mean of the planner's first sampling
distribution, so the search starts among motions the video shows, where the model was trained,
and the cost still decides. TD-MPC2 seeds its planner with a learned policy's samples the same way.
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

WEIGHTS, MANIFEST = "prior.safetensors", "prior.json"


@dataclass
class PriorConfig:
    """The action prior and its training (on detached latents of a trained world model)."""

    horizon: int = 5
    """H, actions proposed per call; a plan longer than this is padded with zeros."""
    max_ahead: int = 5
    """Hindsight goals are drawn 1 .. max_ahead decisions after the current frame (at most horizon):
    the farthest goal the prior learns to head for."""
    hidden: int = 512
    """Width of the MLP's two hidden layers."""
    steps: int = 4000
    """Optimiser steps."""
    batch_size: int = 512
    """(history, goal, actions) rows per step."""
    lr: float = 1.0e-3
    """AdamW learning rate (cosine-decayed to 0 over the steps)."""
    held_out_fraction: float = 0.1
    """Last episodes kept out of training (the same split as the world model's)."""
    seed: int = 0
    """Seeds the initialisation and the row draws."""

    def __post_init__(self):
        check_at_least_one(self, "prior", ("horizon", "max_ahead", "hidden", "steps", "batch_size"))
        check_positive(self, "prior", ("lr",))
        check_held_out_fraction(self, "prior")
        if self.max_ahead > self.horizon:
            raise ValueError(f"prior.max_ahead={self.max_ahead} is beyond prior.horizon={self.horizon}: the prior "
                             "proposes the actions up to its goal, so it needs horizon >= max_ahead")


class ActionPrior(nn.Module):
    """MLP from (previous latent, current latent, goal latent [B, D] each, the action between the two
    frames [B, A]) to the next `horizon` actions [B, H, A], in standardised units inside."""

    def __init__(self, latent_dim: int, action_dim: int, cfg: PriorConfig):
        super().__init__()
        self.cfg, self.action_dim = cfg, action_dim
        for name, size in (("z_mean", latent_dim), ("z_std", latent_dim), ("a_mean", action_dim), ("a_std", action_dim)):
            self.register_buffer(name, torch.zeros(size) if name.endswith("mean") else torch.ones(size))
        self.net = nn.Sequential(
            nn.Linear(3 * latent_dim + action_dim, cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.horizon * action_dim),
        )

    def forward(self, z_prev: Tensor, z_now: Tensor, past: Tensor, goal: Tensor) -> Tensor:
        """-> standardised actions [B, H, A]."""
        z = torch.cat([(x - self.z_mean) / self.z_std for x in (z_prev, z_now, goal)], -1)  # [B, 3D]
        x = torch.cat([z, (past - self.a_mean) / self.a_std], -1)  # [B, 3D + A]
        return self.net(x).view(len(x), self.cfg.horizon, self.action_dim)

    @torch.no_grad()
    def propose(self, z_hist: Tensor, past: Tensor, goal: Tensor, horizon: int) -> Tensor:
        """z_hist [B, 2, D] (previous, current latent), past [B, A], goal [B, D] -> actions [B, horizon, A]
        in the env's units (not clipped; the planner clips), zeros beyond the prior's own horizon."""
        actions = self(z_hist[:, 0], z_hist[:, 1], past, goal) * self.a_std + self.a_mean  # [B, H, A]
        out = actions.new_zeros(len(actions), horizon, self.action_dim)
        keep = min(horizon, self.cfg.horizon)
        out[:, :keep] = actions[:, :keep]
        return out


def hindsight_rows(z: Tensor, a: Tensor, rows: int, horizon: int, max_ahead: int, g: torch.Generator):
    """Random training rows of episodes z [E, T, D], actions a [E, T, A] (row t leads from frame t to t + 1):
    (z_prev, z_now [N, D], past [N, A], goal [N, D], the next `horizon` actions [N, H, A], mask [N, H]:
    1 for the k actions that led to the goal k decisions later)."""
    e_count, t_count = z.shape[:2]
    if t_count < horizon + 2:
        raise ValueError(f"episodes of {t_count} frames are too short for a prior of horizon {horizon}; lower "
                         "prior.horizon")
    e = torch.randint(e_count, (rows,), generator=g)
    t = torch.randint(1, t_count - horizon, (rows,), generator=g)  # frame t - 1 exists; t + horizon too
    k = torch.randint(1, max_ahead + 1, (rows,), generator=g)
    steps = t[:, None] + torch.arange(horizon)  # [N, H]
    e, t, k, steps = (x.to(z.device) for x in (e, t, k, steps))
    mask = (torch.arange(horizon, device=z.device) < k[:, None]).to(z.dtype)  # [N, H]
    return z[e, t - 1], z[e, t], a[e, t - 1], z[e, t + k], a[e[:, None], steps], mask


def fit_prior(z_train: Tensor, a_train: Tensor, cfg: PriorConfig, progress: bool = True) -> ActionPrior:
    """An ActionPrior fitted to latent episodes z_train [E, T, D] with actions a_train [E, T, A]
    (device follows them); returned in eval mode."""
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    prior = ActionPrior(z_train.shape[-1], a_train.shape[-1], cfg).to(z_train.device)
    prior.z_mean.copy_(z_train.mean((0, 1)))
    prior.z_std.copy_(z_train.std((0, 1)) + 1e-4)  # a dead latent dimension must not divide by zero
    prior.a_mean.copy_(a_train[:, :-1].mean((0, 1)))  # the last row of an episode is padding
    prior.a_std.copy_(a_train[:, :-1].std((0, 1)) + 1e-4)
    opt = torch.optim.AdamW(prior.net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in tqdm(range(cfg.steps), desc="action prior", unit="step", disable=not progress):
        z_prev, z_now, past, goal, target, mask = hindsight_rows(z_train, a_train, cfg.batch_size, cfg.horizon,
                                                                 cfg.max_ahead, g)
        error = (prior(z_prev, z_now, past, goal) - (target - prior.a_mean) / prior.a_std).square().mean(-1)  # [N, H]
        loss = (error * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    return prior.eval()


@torch.no_grad()
def held_out_error(prior: ActionPrior, z: Tensor, a: Tensor, rows: int = 4096) -> dict[str, float]:
    """Mean squared error of the proposed actions that led to the goal, in the env's action units, on
    rows of held-out episodes z [E, T, D], a [E, T, A]; beside it the error of always proposing the
    video's mean action (what the prior has to beat) and of the first action alone."""
    cfg = prior.cfg
    z_prev, z_now, past, goal, target, mask = hindsight_rows(z, a, rows, cfg.horizon, cfg.max_ahead,
                                                             torch.Generator().manual_seed(1))
    proposed = prior.propose(torch.stack([z_prev, z_now], 1), past, goal, cfg.horizon)  # [N, H, A]
    per = (proposed - target).square().mean(-1)  # [N, H]
    mean = (prior.a_mean - target).square().mean(-1)  # [N, H]
    return {"error": ((per * mask).sum() / mask.sum()).item(), "mean_action_error": ((mean * mask).sum() / mask.sum()).item(),
            "first_error": per[:, 0].mean().item(), "first_mean_action_error": mean[:, 0].mean().item()}


def train_prior(wm, dataset, cfg: PriorConfig, device: torch.device, progress: bool = True,
                latents: EpisodeLatents | None = None) -> tuple[ActionPrior, dict]:
    """Encodes the dataset with the frozen world model `wm` (or takes its latents from `latents`,
    shared with the other fitted modules), fits an ActionPrior on the train split and returns it on
    `device` with statistics: held_out_error's figures on the held-out episodes."""
    start = time.perf_counter()
    z_train, a_train, z_held, a_held = split_latents(latents or EpisodeLatents(wm, dataset, device), dataset,
                                                     cfg.held_out_fraction, device)
    encode_s = time.perf_counter() - start
    prior = fit_prior(z_train, a_train, cfg, progress)
    stats = {**held_out_error(prior, z_held, a_held), "encode_s": encode_s,
             "train_s": time.perf_counter() - start - encode_s}
    return prior, stats


def prior_key(weights_sha256: str, dataset_name: str, cfg: PriorConfig) -> str:
    """Cache key: the world model's weights (by their recorded hash), the dataset and the config."""
    return cache_key({"weights": weights_sha256, "dataset": dataset_name, "prior": dataclasses.asdict(cfg)})


def save_prior(folder: Path, prior: ActionPrior, stats: dict) -> None:
    """The weights, then the manifest that marks the prior complete."""
    save_fitted(folder, WEIGHTS, MANIFEST, prior,
                {"config": dataclasses.asdict(prior.cfg), "latent_dim": prior.z_mean.shape[0],
                 "action_dim": prior.action_dim, "stats": stats}, "the action prior")


def load_prior(folder: Path) -> ActionPrior:
    """Loads a saved prior (eval mode, CPU); refuses files it cannot verify."""
    manifest, state = load_fitted(folder, WEIGHTS, MANIFEST, "the action prior")
    prior = ActionPrior(manifest["latent_dim"], manifest["action_dim"], PriorConfig(**manifest["config"]))
    prior.load_state_dict(state)
    return prior.eval()
