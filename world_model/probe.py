"""The reacher linear probe report: how well joint angles and the fingertip can be read off z.

Fit on training episodes, scored on held-out ones; never used to train the encoder.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from world_model.dataset import Dataset
from world_model.monitors import REACHER_PROBE_NAMES, r_squared, reacher_probe_targets, ridge_cv, ridge_fit


def probe_rows(ds: Dataset, episodes: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `count` random (frame, qpos) rows from `episodes`, in episode order:
    uint8 [N, H, W, 3] and float [N, 2] (shoulder, wrist)."""
    rows = [(e, t) for e in episodes for t in range(int(ds.episode_lengths[e]))]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(rows), size=min(count, len(rows)), replace=False)
    frames, qpos = [], []
    for i in sorted(picks):
        e, t = rows[i]
        ep = ds.episode(e)
        frames.append(ep.frames[t])
        qpos.append(ep.states[t, :2])
    return np.stack(frames), np.stack(qpos)


@torch.no_grad()
def probe_report(z_train: Tensor, qpos_train: np.ndarray, z_held: Tensor, qpos_held: np.ndarray) -> dict[str, float]:
    """z [N, D] and qpos [N, 2] per split -> R^2 per target, their means, and errors in physical units."""
    y_train = reacher_probe_targets(torch.as_tensor(qpos_train, dtype=torch.float64))  # [N, 6]
    y_held = reacher_probe_targets(torch.as_tensor(qpos_held, dtype=torch.float64))  # [M, 6]
    ridge = ridge_cv(z_train, y_train)  # chosen on the training rows only
    y_hat = ridge_fit(z_train, y_train, ridge)(z_held)  # [M, 6]
    r2 = r_squared(y_hat, y_held)  # [6]
    # Angles from the predicted (sin, cos) pairs, compared on the circle.
    angle_hat = torch.atan2(y_hat[:, [0, 2]], y_hat[:, [1, 3]])  # [M, 2]
    angle = torch.as_tensor(qpos_held, dtype=torch.float64)
    angle_err = torch.atan2(torch.sin(angle_hat - angle), torch.cos(angle_hat - angle)).abs()  # [M, 2]
    tip_err = (y_hat[:, 4:] - y_held[:, 4:]).norm(dim=1)  # [M]
    report = {f"probe_r2_{name}": r2[i].item() for i, name in enumerate(REACHER_PROBE_NAMES)}
    report.update(
        probe_r2_joints=r2[:4].mean().item(),
        probe_r2_fingertip=r2[4:].mean().item(),
        probe_shoulder_err_rad=angle_err[:, 0].mean().item(),
        probe_wrist_err_rad=angle_err[:, 1].mean().item(),
        probe_fingertip_err_cm=100 * tip_err.mean().item(),
        probe_ridge=ridge,
    )
    return report
