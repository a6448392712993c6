"""The frozen encoder's latents of whole dataset episodes, for what is trained on top of them
afterwards (the reach critic, the level-2 predictor)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


@torch.no_grad()
def encode_episodes(wm, dataset, episodes: np.ndarray, device: torch.device) -> Tensor:
    """Every frame of the given episodes encoded: [E, T, D] (episodes of equal length)."""
    out = []
    for e in episodes:
        frames = torch.from_numpy(np.array(dataset.episode(int(e)).frames)).to(device)  # copy: memmaps are read-only
        out.append(wm.encode(frames[:, None])[:, 0])  # [T, 1, H, W, 3] -> [T, D]
    return torch.stack(out)


def episode_actions(dataset, episodes: np.ndarray, device: torch.device) -> Tensor:
    """The actions of the given episodes: [E, T, A]; row t leads from frame t to t + 1 (last row 0)."""
    return torch.from_numpy(np.stack([np.array(dataset.episode(int(e)).actions) for e in episodes])).to(device)
