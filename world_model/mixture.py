"""Several envs' datasets as one training stream, for a shared world model: `python -m
world_model.train dataset=[A,B] dataset_weights=[0.7,0.3]`.

The datasets share one frame size and hold one env each; each clip of a batch comes from a dataset
drawn by the mixing weights, its actions coded for the shared model (world_model/action_code.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from world_model.action_code import encode_actions
from world_model.cli import SettingError
from world_model.dataset import DatasetError
from world_model.windows import WindowSampler


def dataset_roots(dataset) -> list[Path]:
    """The `dataset` setting (one folder, or a list of folders) as a list of folders."""
    if isinstance(dataset, (str, Path)):
        return [Path(dataset)]
    return [Path(d) for d in dataset]


def mixing_weights(weights, count: int) -> list[float]:
    """The mixing weights of `count` datasets (None: equal), normalised to sum to 1; a wrong count
    or a weight that is not a finite number above 0 is refused in one line."""
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if count == 1:
        raise SettingError(f"dataset_weights={weights} but one dataset is given; the weights mix several "
                           "(dataset=[A,B]): leave dataset_weights unset (null)")
    if len(weights) != count or not all(w > 0 and math.isfinite(w) for w in weights):
        raise SettingError(f"dataset_weights={weights}: give one finite weight above 0 per dataset ({count} "
                           "datasets), or leave it unset (null) for equal weights")
    return [w / sum(weights) for w in weights]


def check_mixture(roots: list[Path], manifests: list[dict]) -> None:
    """The datasets of a shared model (their manifests) have one frame size and one env each,
    refused in one line otherwise."""
    sizes = [m["arrays"]["frames"]["row_shape"][0] for m in manifests]
    if len(set(sizes)) > 1:
        each = ", ".join(f"{r} ({m['env']['name']}) has {s} px" for r, m, s in zip(roots, manifests, sizes))
        raise DatasetError(f"the datasets of a shared world model must have one frame size, but {each}; collect "
                           "them at one size (`python -m agent.collect env=<name> env.image_size=N`)")
    names = [m["env"]["name"] for m in manifests]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DatasetError(f"datasets {', '.join(map(str, roots))} hold env {', '.join(twice)} more than once; a "
                           "shared world model takes one dataset per env (collect one larger dataset instead)")


class MixtureSampler:
    """Clips from several datasets' WindowSamplers: the dataset of each clip drawn by the mixing
    weights, the clip uniformly among that dataset's; actions coded for the shared model."""

    def __init__(self, samplers: list[WindowSampler], weights: list[float], action_dims: list[int]):
        """samplers: one per env, in the shared model's env order; weights: normalised, one per
        sampler; action_dims: each env's own action size."""
        self.samplers, self.action_dims = samplers, action_dims
        self.weights = torch.tensor(weights, dtype=torch.float64)  # [E]
        self.sizes = torch.tensor([len(s) for s in samplers], dtype=torch.float64)  # [E]

    def __len__(self) -> int:
        return sum(len(s) for s in self.samplers)

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               share: tuple[int, int] = (0, 1)) -> dict[str, Tensor]:
        """A random batch drawn from `generator` (default: the global torch RNG, which checkpoints
        save): frames uint8 [B, L, H, W, 3], actions [B, L-1, A_max + E] (coded), env int64 [B] (the
        env index of each clip). share=(rank, ranks): the rank-th contiguous part of the batch, as
        WindowSampler.sample (every rank draws the whole batch's indices)."""
        rank, ranks = share
        if batch_size % ranks != 0 or not 0 <= rank < ranks:
            raise ValueError(f"share={share} of a batch of {batch_size}: the batch must split evenly over the ranks")
        env = torch.multinomial(self.weights, batch_size, replacement=True, generator=generator)  # [B]
        uniform = torch.rand(batch_size, generator=generator, dtype=torch.float64)  # [B]
        picks = torch.minimum((uniform * self.sizes[env]).long(), self.sizes[env].long() - 1)  # [B]
        part = slice(rank * (batch_size // ranks), (rank + 1) * (batch_size // ranks))
        frames, actions = [], []
        for e, pick in zip(env[part].tolist(), picks[part].tolist()):
            clip = self.samplers[e].gather(np.array([pick]))
            frames.append(clip["frames"])
            actions.append(encode_actions(clip["actions"].float(), e, self.action_dims))
        return {"frames": torch.cat(frames), "actions": torch.cat(actions), "env": env[part]}
