"""The frozen encoder's latents of whole dataset episodes, for what is fitted on top of them
afterwards (the reach critic, the landmark graph, the level-2 predictor, the pixel decoder)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from world_model.windows import split_episodes


class EpisodeLatents:
    """Every frame of a dataset's episodes encoded by the frozen world model, each episode once and
    kept: agent.run makes one per (model, dataset) and hands it to everything it fits on top, so the
    training video is encoded once, not once per fitted module. An episode is encoded alone (a batch
    of its T frames), so its latents do not depend on which episodes were asked for with it."""

    def __init__(self, wm, dataset, device: torch.device):
        self.wm, self.dataset, self.device = wm.to(device).eval(), dataset, device
        self._kept: dict[int, Tensor] = {}  # episode index -> [T, D]

    @torch.no_grad()
    def __call__(self, episodes: np.ndarray) -> Tensor:
        """episodes [E] indices -> [E, T, D] (episodes of equal length)."""
        for e in map(int, episodes):
            if e not in self._kept:
                frames = torch.from_numpy(np.array(self.dataset.episode(e).frames)).to(self.device)  # copy: memmaps are read-only
                self._kept[e] = self.wm.encode(frames[:, None])[:, 0]  # [T, 1, H, W, 3] -> [T, D]
        return torch.stack([self._kept[int(e)] for e in episodes])


def encode_episodes(wm, dataset, episodes: np.ndarray, device: torch.device) -> Tensor:
    """Every frame of the given episodes encoded: [E, T, D], nothing kept."""
    return EpisodeLatents(wm, dataset, device)(episodes)


def split_latents(latents: EpisodeLatents, dataset, held_out_fraction: float,
                  device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(z_train [E, T, D], a_train [E, T, A], z_held, a_held): latents and actions of the world
    model's train / held-out episode split (the last `held_out_fraction` of episodes held out)."""
    train_eps, held_eps = split_episodes(dataset.num_episodes, held_out_fraction)
    return (latents(train_eps), episode_actions(dataset, train_eps, device), latents(held_eps),
            episode_actions(dataset, held_eps, device))


def episode_probe(dataset, episodes: np.ndarray, device: torch.device) -> Tensor:
    """The probe targets the dataset recorded with every frame of the given episodes: [E, T, K]."""
    return torch.from_numpy(np.stack([np.array(dataset.episode(int(e)).probe) for e in episodes])).to(device)


def episode_actions(dataset, episodes: np.ndarray, device: torch.device) -> Tensor:
    """The actions of the given episodes: [E, T, A]; row t leads from frame t to t + 1 (last row 0)."""
    return torch.from_numpy(np.stack([np.array(dataset.episode(int(e)).actions) for e in episodes])).to(device)
