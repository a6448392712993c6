"""Data-parallel training across processes: `torchrun --nproc_per_node N -m world_model.train ...`.

torchrun starts N processes (ranks) and describes the group in their environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); world_model.train joins it with `joined`
(nccl on CUDA, gloo on CPU), and train() reads its place with `current()`. A process that
torchrun did not start never initialises torch.distributed: `current()` is then rank 0 of 1.

What training does with more than one rank (world_model/train.py):
- every rank draws the same global batch indices from the same torch RNG state and reads only
  its contiguous share (WindowSampler.sample(share=...)), so the ranks' shares together are the
  batch one process would draw;
- the batch statistics of the loss (VICReg variance and covariance, Barlow, motion spread) are
  computed on embeddings gathered from every rank (`gather`, with gradients), and
  DistributedDataParallel averages the gradients: the step equals one process's up to float
  rounding;
- rank 0 alone writes the run folder (checkpoints, metrics, monitors); the others wait at a barrier.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group of training processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run folder and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group is initialised (a torchrun of one process is one too)."""
        return dist.is_available() and dist.is_initialized()


def current() -> Ranks:
    """Rank and world size of the initialised process group; rank 0 of 1 when there is none."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def launched_by_torchrun() -> bool:
    """Whether torchrun (or a launcher that sets the same variables) started this process."""
    return "WORLD_SIZE" in os.environ


@contextmanager
def joined(device: torch.device) -> Iterator[None]:
    """Joins the process group torchrun described in the environment for the duration: nccl with
    one GPU per rank (cuda:LOCAL_RANK, made the current device) when `device` is CUDA, else gloo."""
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not set: this process was not started by torchrun; launch it with "
            "`torchrun --nproc_per_node N -m world_model.train ...`, or run it without torchrun as one process"
        )
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; train in one process (without torchrun)")
    if device.type == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        if local >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local} but torch sees {torch.cuda.device_count()} GPU(s) on this machine; "
                "start at most one process per GPU (--nproc_per_node)"
            )
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """The device this rank trains on, given the configured one (cuda: the current device, which
    `joined` set to cuda:LOCAL_RANK); refuses a device the group's backend cannot carry."""
    backend = dist.get_backend()
    if device.type == "cuda":
        if backend != "nccl":
            raise RuntimeError(f"device {device} needs the nccl backend, but the process group uses {backend}; "
                               "join it with world_model.distributed.joined(device), or pass device=cpu")
        return torch.device("cuda", torch.cuda.current_device())
    if backend != "gloo":
        raise RuntimeError(f"device {device} needs the gloo backend, but the process group uses {backend}; "
                           "pass device=cuda, or join the group with world_model.distributed.joined(device)")
    return device


def barrier() -> None:
    """Every rank waits here until all have arrived (no-op in one process)."""
    if not current().distributed:
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each rank the gradient of its own rows, summed over ranks."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        # every rank's loss reads every rank's rows: a row's gradient is the sum over the ranks'
        # losses (all_reduce, which gloo has, unlike reduce_scatter)
        grad = grad.contiguous()
        dist.all_reduce(grad)
        n = grad.shape[0] // dist.get_world_size()
        rank = dist.get_rank()
        return grad[rank * n : (rank + 1) * n]


def gather(x: Tensor) -> Tensor:
    """Every rank's x concatenated in rank order, with gradients: [n, ...] -> [world_size * n, ...].

    Each rank's loss then holds the whole-batch statistic, so the gradient it sends to a row is
    world_size times that row's share; DistributedDataParallel's averaging over ranks divides it back.
    Every rank must pass the same n.
    """
    return _GatherWithGrad.apply(x)


def mean_over_ranks(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each scalar averaged over the ranks, in one all_reduce: {name: scalar} -> {name: scalar}.

    The loss terms that are means over this rank's rows become means over the global batch (every
    rank holds as many rows); the gathered batch statistics are equal on every rank and stay as they are.
    """
    names = sorted(values)
    stacked = torch.stack([values[k].detach().float() for k in names])
    dist.all_reduce(stacked)
    stacked /= dist.get_world_size()
    return dict(zip(names, stacked.unbind()))


class TrainStep(nn.Module):
    """The model and its loss as one module, so DistributedDataParallel sees one forward per step:
    it synchronises the gradients of the parameters that forward used (the model's and the loss's
    inverse-dynamics head), and the loss calls model.encode / model.rollout, which are not forward."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, frames: Tensor, actions: Tensor, probe: Tensor | None = None) -> dict[str, Tensor]:
        """frames uint8 [b, L, H, W, 3], actions [b, L-1, A], probe targets [b, L, K] or None (this
        rank's share) -> loss terms, their batch statistics over every rank's share."""
        return self.loss_fn(self.model, frames, actions, gather=gather, probe=probe)
