"""Sampling fixed-length clips (windows of consecutive frames within one episode) from a Dataset."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from world_model.dataset import Dataset


def split_episodes(num_episodes: int, held_out_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out episode indices; the held-out ones are the last episodes, so the split
    does not move when the training seed changes."""
    held = max(1, round(num_episodes * held_out_fraction)) if held_out_fraction > 0 else 0
    if held >= num_episodes:
        raise ValueError(f"held_out_fraction={held_out_fraction} leaves no training episode out of {num_episodes}")
    return np.arange(num_episodes - held), np.arange(num_episodes - held, num_episodes)


class WindowSampler:
    """Draws clips of `length` frames, uniformly over every valid start in the given episodes; with
    `probe`, each clip also carries the probe targets of its frames."""

    def __init__(self, dataset: Dataset, episodes: np.ndarray, length: int, probe: bool = False):
        self.dataset = dataset
        self.length = length
        self.probe = probe
        if len(episodes) == 0:  # not a length problem: say so, rather than blame data.steps below
            raise ValueError("the split holds no episode to draw clips from; give it at least one episode")
        starts = [(e, t) for e in episodes for t in range(int(dataset.episode_lengths[e]) - length + 1)]
        if not starts:
            raise ValueError(f"no episode in the split has {length} frames; collect longer episodes (data.steps)")
        self.starts = np.asarray(starts, np.int64)  # [W, 2]: (episode, first frame)

    def __len__(self) -> int:
        return len(self.starts)

    def gather(self, picks: np.ndarray) -> dict[str, Tensor]:
        """Clips at rows `picks` of self.starts: frames uint8 [B, L, H, W, 3], actions [B, L-1, A]
        (actions[:, t] leads from frame t to t+1), and with `probe` the targets float32 [B, L, K]."""
        frames, actions, probe = [], [], []
        for episode, start in self.starts[picks]:
            ep = self.dataset.episode(int(episode))
            end = start + self.length
            frames.append(ep.frames[start:end])
            actions.append(ep.actions[start : end - 1])
            if self.probe:
                probe.append(ep.probe[start:end])
        batch = {"frames": torch.from_numpy(np.stack(frames)), "actions": torch.from_numpy(np.stack(actions))}
        if self.probe:
            batch["probe"] = torch.from_numpy(np.stack(probe).astype(np.float32))
        return batch

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, share: tuple[int, int] = (0, 1)
    ) -> dict[str, Tensor]:
        """A random batch of batch_size clips drawn from `generator` (default: the global torch RNG,
        whose state checkpoints save, so a resumed run draws the same batches).

        share=(rank, ranks) reads only the rank-th of `ranks` contiguous parts of that batch,
        batch_size / ranks clips. Every rank draws the same batch_size indices from the same RNG
        state, so the parts are disjoint, together they are the batch one process would draw, and
        the RNG state after the draw does not depend on the number of ranks.
        """
        rank, ranks = share
        if batch_size % ranks != 0 or not 0 <= rank < ranks:
            raise ValueError(f"share={share} of a batch of {batch_size}: the batch must split evenly over the ranks")
        picks = torch.randint(len(self.starts), (batch_size,), generator=generator).numpy()
        part = batch_size // ranks
        return self.gather(picks[rank * part : (rank + 1) * part])

    def fixed(self, count: int, seed: int = 0) -> dict[str, Tensor]:
        """The same `count` clips every call (for monitors)."""
        rng = np.random.default_rng(seed)
        return self.gather(rng.choice(len(self.starts), size=min(count, len(self.starts)), replace=False))
