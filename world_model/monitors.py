"""Quality monitors for a world model; none of them computes gradients or changes the model."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

from world_model.model import WorldModel


@torch.no_grad()
def rollout_error(model: WorldModel, frames: Tensor, actions: Tensor) -> dict[str, Tensor]:
    """Per-step rollout error against the copy-last-representation baseline.

    Args:
        frames: uint8 [B, L, H, W, 3], L = history + H
        actions: [B, L-1, A]; actions[:, t] leads from frame t to t+1
    Returns:
        {"model": [H], "copy_last": [H]}: mean squared latent error at each rollout step, of the
        rollout and of predicting that nothing changes after the last history frame
    """
    k = model.cfg.history
    if frames.shape[1] <= k or actions.shape[1] != frames.shape[1] - 1:
        raise ValueError(
            f"need frames [B, L, H, W, 3] with L > history={k} and actions [B, L-1, A], "
            f"got {tuple(frames.shape)} and {tuple(actions.shape)}"
        )
    z = model.encode(frames)  # [B, L, D]
    rolled = model.rollout(z[:, :k], actions[:, k - 1 :], past_actions=actions[:, : k - 1])  # [B, H, D]
    target = z[:, k:]  # [B, H, D]
    return {
        "model": (rolled - target).square().mean(dim=(0, 2)),
        "copy_last": (z[:, k - 1 : k] - target).square().mean(dim=(0, 2)),
    }


@torch.no_grad()
def dimension_std(z: Tensor) -> float:
    """Mean over dimensions of the std over samples. z [N, D] -> float; near 0 means collapse."""
    return z.float().std(dim=0).mean().item()


@torch.no_grad()
def effective_rank(z: Tensor) -> float:
    """exp(entropy) of the normalised singular values of centred z [N, D] -> float in [1, min(N, D)].

    Scale-free: near 1 means the samples vary along one direction only (dimensional collapse);
    pair it with dimension_std, which catches a shrinking scale.
    """
    zc = z.double() - z.double().mean(dim=0)
    s = torch.linalg.svdvals(zc)
    if s.sum() == 0:
        return 1.0  # every sample identical: one (degenerate) direction at most
    p = s / s.sum()
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()).item()


class RidgeMap:
    """A fitted linear map z [M, D] -> y [M, K] (float64), from ridge_fit."""

    def __init__(self, mean: Tensor, std: Tensor, weights: Tensor):
        self.mean, self.std, self.weights = mean, std, weights  # [D], [D], [D+1, K]

    @torch.no_grad()
    def __call__(self, z: Tensor) -> Tensor:
        """z [M, D] -> predictions [M, K]"""
        x = F.pad((z.detach().double() - self.mean) / self.std, (0, 1), value=1.0)  # [M, D+1], last column = bias
        return x @ self.weights


@torch.no_grad()
def ridge_fit(z: Tensor, y: Tensor, ridge: float = 1e-3) -> RidgeMap:
    """Closed-form ridge regression from frozen representations z [N, D] to targets y [N, K].

    Features are standardised with these rows' statistics so `ridge` means the same at any
    latent scale; the bias is not shrunk. Nothing flows back to whatever produced z.
    """
    return ridge_fits(z, y, (ridge,))[0]


@torch.no_grad()
def ridge_fits(z: Tensor, y: Tensor, ridges: tuple[float, ...]) -> list[RidgeMap]:
    """ridge_fit for several strengths on the same rows: z [N, D], y [N, K] -> one map per ridge.
    The standardisation and the Gram matrix, most of the work, are computed once for all."""
    z, y = z.detach().double(), y.detach().double().to(z.device)
    mean, std = z.mean(0), z.std(0) + 1e-8
    x = F.pad((z - mean) / std, (0, 1), value=1.0)  # [N, D+1], last column = bias
    gram, xty = x.T @ x, x.T @ y  # [D+1, D+1], [D+1, K]
    maps = []
    for ridge in ridges:
        reg = ridge * len(x) * torch.eye(x.shape[1], dtype=torch.float64, device=z.device)
        reg[-1, -1] = 0
        maps.append(RidgeMap(mean, std, torch.linalg.solve(gram + reg, xty)))  # weights [D+1, K]
    return maps


RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@torch.no_grad()
def ridge_cv(z: Tensor, y: Tensor, grid: tuple[float, ...] = RIDGE_GRID, folds: int = 5) -> float:
    """The ridge strength from `grid` with the lowest k-fold squared error on these rows.

    z [N, D], y [N, K] -> ridge. Folds are contiguous blocks of rows, so rows drawn in episode
    order keep most of an episode in one fold and a fold scores frames of episodes it did not
    fit on. Chosen on training rows only: the held-out rows never pick the probe.
    """
    n = len(z)
    if n < 2 * folds:
        raise ValueError(f"ridge_cv needs at least {2 * folds} rows for {folds} folds, got {n}")
    edges = torch.linspace(0, n, folds + 1).long().tolist()
    errors = [0.0] * len(grid)
    for lo, hi in itertools.pairwise(edges):
        keep = torch.ones(n, dtype=torch.bool)
        keep[lo:hi] = False
        held = y[lo:hi].double().to(z.device)  # [n_fold, K]
        for i, fit in enumerate(ridge_fits(z[keep], y[keep], grid)):
            errors[i] += (fit(z[lo:hi]) - held).square().sum().item()
    return grid[errors.index(min(errors))]


@torch.no_grad()
def linear_probe(
    z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor, ridge: float | None = None
) -> Tensor:
    """Ridge probe fitted on the training rows, scored on held-out rows.

    Args:
        z_train: [N, D], y_train: [N, K] rows used to fit
        z_test: [M, D], y_test: [M, K] held-out rows used to score
        ridge: ridge strength; None chooses it by cross-validation on the training rows (ridge_cv)
    Returns:
        R^2 per target [K] (float64; 1 perfect, 0 no better than the held-out mean, can be negative)
    """
    if ridge is None:
        ridge = ridge_cv(z_train, y_train)
    return r_squared(ridge_fit(z_train, y_train, ridge)(z_test), y_test)


@torch.no_grad()
def r_squared(y_hat: Tensor, y: Tensor) -> Tensor:
    """Predictions y_hat [M, K] against targets y [M, K] -> R^2 per target [K] (float64; 1 perfect,
    0 no better than the targets' mean, can be negative)."""
    y = y.detach().double().to(y_hat.device)
    residual = (y - y_hat.double()).square().sum(0)
    total = (y - y.mean(0)).square().sum(0).clamp_min(1e-12)
    return 1 - residual / total
