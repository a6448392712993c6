"""The linear probe report: how well the env's probe targets (envs/base.py: probe_targets, e.g.
a pose or a position) can be read off z by a ridge map.

Fit on training episodes, scored on held-out ones; never used to train the encoder. The target
names and their groups come from the dataset's manifest, so this file knows no env.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from world_model.dataset import Dataset
from world_model.monitors import r_squared, ridge_cv, ridge_fit


def probe_rows(ds: Dataset, episodes: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `count` random (frame, probe target) rows from `episodes`, in episode order:
    uint8 [N, H, W, 3] and float32 [N, K]."""
    rows = [(e, t) for e in episodes for t in range(int(ds.episode_lengths[e]))]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(rows), size=min(count, len(rows)), replace=False)
    frames, targets = [], []
    for i in sorted(picks):
        e, t = rows[i]
        ep = ds.episode(e)
        frames.append(ep.frames[t])
        targets.append(ep.probe[t])
    return np.stack(frames), np.stack(targets)


def probe_stats(ds: Dataset, episodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean [K], std [K]) of the probe targets over every frame of `episodes`; refuses a dataset
    that recorded none."""
    targets = np.concatenate([np.asarray(ds.episode(int(e)).probe, np.float64) for e in episodes])  # [N, K]
    if targets.ndim != 2 or targets.shape[1] == 0:
        raise ValueError(f"dataset {ds.root} records no probe targets (its env declares none); set loss.probe_weight=0")
    return targets.mean(0).astype(np.float32), targets.std(0).astype(np.float32)


@torch.no_grad()
def probe_report(z_train: Tensor, y_train: np.ndarray, z_held: Tensor, y_held: np.ndarray,
                 groups: dict[str, list[str]]) -> dict[str, float]:
    """z [N, D] and targets y [N, K] per split -> R^2 per target name, per group (mean over its
    names) and overall ("probe_r2"), the held-out RMSE per group in the targets' units, and the ridge."""
    y_train = torch.as_tensor(np.asarray(y_train), dtype=torch.float64)  # [N, K]
    y_held = torch.as_tensor(np.asarray(y_held), dtype=torch.float64)  # [M, K]
    names = [n for group in groups.values() for n in group]
    if len(names) != y_train.shape[1]:
        raise ValueError(f"{y_train.shape[1]} probe targets but {len(names)} names in the groups {groups}")
    ridge = ridge_cv(z_train, y_train)  # chosen on the training rows only
    y_hat = ridge_fit(z_train, y_train, ridge)(z_held)  # [M, K]
    r2 = r_squared(y_hat, y_held)  # [K]
    report = {f"probe_r2_{name}": r2[i].item() for i, name in enumerate(names)}
    first = 0
    for group, members in groups.items():
        cols = slice(first, first + len(members))
        report[f"probe_r2_{group}"] = r2[cols].mean().item()
        report[f"probe_rmse_{group}"] = (y_hat[:, cols] - y_held[:, cols].to(y_hat)).square().mean().sqrt().item()
        first += len(members)
    report.update(probe_r2=r2.mean().item(), probe_ridge=ridge)
    return report
