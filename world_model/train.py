"""Trains the JEPA world model on offline agent video: `python -m world_model.train dataset=PATH`.

It knows datasets and tensors, never environments: frame size, action size and probe targets come
from the dataset's manifest (`python -m agent.collect` or `python -m agent.run` make datasets).
The run folder (default cache/models/<env>-<hash of the config and the dataset>) holds `latest/` and `best/`
checkpoints, `metrics.jsonl` / `metrics.csv`, and `summary.json` once training has finished.
`resume=true` continues from `latest/` and ends exactly where an uninterrupted run would: batches
are drawn from the torch RNG, whose state is saved with every checkpoint.

Several envs at once: `python -m world_model.train dataset=[A,B] dataset_weights=[0.7,0.3]` trains one
shared world model on datasets of different envs (one frame size), each clip of a batch drawn from a
dataset by the weights (world_model/mixture.py), the actions padded and coded by env
(world_model/action_code.py); its run folder is <cache_root>/models/<env>+<env>-<hash>, its monitors
run per env, and `python -m agent.run env=<one of them> checkpoint=...` plans with it.

Across processes: `torchrun --nproc_per_node N -m world_model.train dataset=PATH` (more machines:
torchrun's --nnodes and --rdzv-endpoint; the dataset and the run folder must be on a filesystem
every rank reads). optim.batch_size stays the global batch, split evenly over the N ranks; each
rank reads its share of the clips one process would draw, the loss's batch statistics see the
whole batch, and DistributedDataParallel averages the gradients (world_model/distributed.py), so
N ranks train the same run as one process up to float rounding: the run folder, its identity and
the checkpoints do not depend on N, and `resume=true` continues a run with any number of ranks
(the saved RNG state is the same on every rank). Rank 0 alone writes the run folder. nccl on
CUDA (one GPU per rank), gloo on CPU.
"""

from __future__ import annotations

import functools
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from world_model import distributed
from world_model.action_code import encode_actions, shared_action_dim
from world_model.atomic import WriteError, check_writable
from world_model.cache_key import cache_key
from world_model.cache_lock import building
from world_model.checkpoint import checkpoint_exists, load, load_training_state, newest_verified, restore_newest, save
from world_model.checkpoint import read_manifest as read_checkpoint_manifest
from world_model.cli import SettingError
from world_model.dataset import Dataset, read_manifest, write_json_atomic
from world_model.losses import JEPALoss, LossConfig
from world_model.metrics_log import MetricsLog
from world_model.mixture import MixtureSampler, check_mixture, dataset_roots, mixing_weights
from world_model.model import WorldModel, WorldModelConfig, single_env_record
from world_model.monitors import dimension_std, effective_rank, rollout_error
from world_model.plain import plain
from world_model.probe import probe_report, probe_rows, probe_stats
from world_model.warm_start import source_identity, warm_start
from world_model.windows import WindowSampler, split_episodes


@dataclass
class OptimConfig:
    """AdamW with linear warm-up, a constant peak, then cosine decay over the last decay_fraction."""

    batch_size: int = 64
    """Clips per step, over all processes (torchrun splits it evenly over the ranks)."""
    lr: float = 1e-3
    """Peak learning rate (a higher peak trained worse: docs/NOTEBOOK.md, "The longer configuration of the
    token_dim-4 model")."""
    weight_decay: float = 0.05
    """AdamW decoupled weight decay (matrices only; norms and biases are not decayed)."""
    warmup_steps: int = 200
    """Linear warm-up length in steps."""
    min_lr_ratio: float = 0.05
    """Final learning rate as a fraction of the peak."""
    decay_fraction: float = 0.3
    """Share of the post-warm-up steps, at the end, over which the cosine decay runs; before it the
    rate holds at the peak (1.0: plain warm-up + cosine; 0.3: warmup-stable-decay)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip."""


@dataclass
class TrainConfig:
    """`python -m world_model.train` settings."""

    dataset: Any = None
    """Dataset folder to train on (`python -m world_model.train` needs it; agent.run passes its own), or a
    list of folders, one per env (dataset=[A,B]): a shared world model over their envs, whose actions
    are padded to the widest and coded by env (world_model/mixture.py, world_model/action_code.py)."""
    dataset_weights: list[float] | None = None
    """Mixing weights of a list of datasets, one per dataset, in its order (any positive scale: they
    are normalised): each clip of a batch comes from a dataset drawn by them. None: equal weights.
    Set only with several datasets."""
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    """Architecture; image_size and action_dim left null are taken from the dataset."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss terms and their weights."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and schedule."""
    steps: int = 2500
    """Optimiser steps (docs/NOTEBOOK.md, "The default now (2026-11-26, CPU): token_dim 12, held peak rate,
    2,500 steps"); agent.run takes an env's own from configs/schedule/<env>.yaml where there is one."""
    seed: int = 0
    """Seeds the initial weights and the batch order."""
    held_out_fraction: float = 0.1
    """Fraction of episodes (the last ones) kept out of training for the monitors and the probe."""
    log_every: int = 50
    """Steps between metric records."""
    monitor_every: int = 500
    """Steps between quality monitors (also run at the end)."""
    checkpoint_every: int = 250
    """Steps between checkpoints of latest/."""
    monitor_clips: int = 256
    """Held-out clips used for the rollout-error monitor and the held-out loss."""
    probe_frames: int = 10000
    """Frames of training episodes the linear probe is fitted on; fewer rows read R^2 low, the more
    so the wider z is (docs/NOTEBOOK.md: 3,000 vs 10,000 rows)."""
    probe_held_frames: int = 3000
    """Frames of held-out episodes the linear probe is scored on."""
    device: str = "auto"
    """"auto" (CUDA when present), "cpu" or "cuda"."""
    compile: bool = False
    """torch.compile the encoder and predictor."""
    threads: int = 0
    """torch CPU threads of the whole process (training and everything fitted after it); 0 keeps
    torch's default (OMP_NUM_THREADS, else the cores)."""
    resume: bool = False
    """Continue an unfinished run from its latest/ checkpoint."""
    init: str | None = None
    """Start from the weights of this world model checkpoint (a latest/ or best/ folder of the same
    architecture and frame size) instead of a random initialisation: fine-tuning, e.g. a shared model
    on an env it was not trained on (world_model/warm_start.py says what is copied). Its weights'
    sha256 is part of the run identity. None: from scratch."""
    cache_root: str = "cache"
    """Root of the dataset and model caches."""
    out: str | None = None
    """Run folder; default <cache_root>/models/<env>-<hash of the config>."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs `pip install tensorboard`)."""


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite."""


class TrainingStopped(RuntimeError):
    """A file of the run folder could not be written (full disk, file-size limit); the run
    resumes from its last checkpoint once the cause is fixed."""


def _resumes_from(folder: Path) -> str:
    """Where a rerun with resume=true continues the run in `folder`, in words."""
    newest = newest_verified(folder / "latest")
    if newest is None:
        return "no checkpoint was saved yet, so it starts over"
    return f"it continues from {newest} at step {read_checkpoint_manifest(newest)['step']}"


def run_identity(cfg, data_identity: dict | list[dict], weights: list[float] | None = None) -> dict:
    """Everything that changes the trained weights (not logging, device or paths); data_identity
    is the dataset manifest's "identity", or a list of them for a shared model, whose normalised
    mixing weights are `weights`. A single dataset's identity (a list of one included) is as it was
    before shared models (no weights, no unset shared-model fields), so its run folder keeps its name."""
    if isinstance(data_identity, list) and len(data_identity) == 1:
        data_identity, weights = data_identity[0], None
    loss = plain(cfg.loss)
    for key in ("probe_weight", "probe_rollout_weight"):  # unset: the name a model had before the probe terms existed
        if not loss.get(key):
            loss.pop(key, None)
    identity = {
        "data": data_identity,
        "world_model": single_env_record(plain(cfg.world_model)),
        "loss": loss,
        "optim": plain(cfg.optim),
        "steps": int(cfg.steps),
        "seed": int(cfg.seed),
        "held_out_fraction": float(cfg.held_out_fraction),
    }
    if weights is not None:
        identity["dataset_weights"] = weights
    if cfg.init:
        identity["init"] = source_identity(cfg.init)
    return identity


def run_dir(cfg, dataset_root) -> Path:
    """The run folder of `cfg` trained on the dataset at dataset_root, or on the list of datasets
    (a shared model: <cache_root>/models/<env>+<env>...-<hash>); their manifests are read, not their
    shards. Mixing weights that do not fit the datasets, and datasets that cannot be mixed, are refused."""
    roots = dataset_roots(dataset_root)
    weights = mixing_weights(cfg.dataset_weights, len(roots))  # refuses weights given with one dataset
    if cfg.out:
        return Path(cfg.out)
    manifests = [read_manifest(root) for root in roots]
    if len(roots) > 1:
        check_mixture(roots, manifests)
    identity = run_identity(cfg, [m["identity"] for m in manifests], weights)
    key = cache_key(identity)
    return Path(cfg.cache_root) / "models" / f"{'+'.join(m['env']['name'] for m in manifests)}-{key}"


def model_config(cfg_world_model, ds: Dataset | list[Dataset]) -> WorldModelConfig:
    """The architecture with the dataset's frame and action sizes filled in (a list of datasets: a
    shared model's, with its env list and their action sizes, world_model/action_code.py); a
    configured size that differs from the dataset's is refused."""
    values = plain(cfg_world_model)
    if isinstance(ds, list) and len(ds) > 1:
        dims = [d.action_dim for d in ds]
        sizes = {"image_size": ds[0].image_size, "action_dim": shared_action_dim(dims),
                 "envs": [d.env_name for d in ds], "env_action_dims": dims}
        where = f"datasets {', '.join(str(d.root) for d in ds)} have"
    else:
        ds = ds[0] if isinstance(ds, list) else ds
        sizes, where = {"image_size": ds.image_size, "action_dim": ds.action_dim}, f"dataset {ds.root} has"
    for name, actual in sizes.items():
        if values.get(name) is None:
            values[name] = actual
        elif values[name] != actual:
            raise ValueError(
                f"world_model.{name}={values[name]} but {where} {actual}; "
                f"leave world_model.{name} unset (null) to take the dataset's"
            )
    return WorldModelConfig(**values)


_DEFAULT_THREADS = torch.get_num_threads()  # what the process started with (OMP_NUM_THREADS, else the cores)


def use_threads(threads: int) -> None:
    """Sets torch's CPU threads for the whole process, from `threads` (0: the count it started with),
    so that everything it trains or fits (world model, critic, decoder, ...) uses the same count: the
    floats, and so the bytes of what is fitted, depend on it. Called once at the start of an entry point."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise SettingError(f"threads={threads}: it must be a whole number of CPU threads, at least 0 "
                         "(0 = torch's default)")
    torch.set_num_threads(threads or _DEFAULT_THREADS)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but torch sees no CUDA device; use device=auto or device=cpu")
    return torch.device(name)


def warmup_cosine(warmup: int, total: int, min_ratio: float, decay_fraction: float = 1.0):
    """Learning-rate factor per step: linear warm-up, the peak held, cosine decay over the last
    decay_fraction of the steps after warm-up (ends at min_ratio on the last step)."""
    decay_steps = max(1, round(decay_fraction * (total - warmup)))
    decay_start = total - decay_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, max(0.0, (step - decay_start) / decay_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _optimizer(cfg: OptimConfig, modules: list[torch.nn.Module]) -> torch.optim.AdamW:
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


@torch.no_grad()
def encode_frames(
    encode: Callable[[torch.Tensor], torch.Tensor], frames: np.ndarray, device: torch.device, chunk: int = 256
) -> torch.Tensor:
    """uint8 frames [N, H, W, 3] through `encode` (model.encode, or model.encoder.tokens for the
    trunk), which takes uint8 [n, 1, H, W, 3], in chunks -> one flattened row per frame [N, F] on the CPU."""
    out = []
    for i in range(0, len(frames), chunk):
        batch = torch.from_numpy(np.ascontiguousarray(frames[i : i + chunk])).to(device)
        out.append(encode(batch[:, None]).flatten(1).float().cpu())  # [n, 1, H, W, 3] -> [n, F]
    return torch.cat(out)


@torch.no_grad()
def monitor(model: WorldModel, loss_fn: JEPALoss, clips: dict, probe: dict, device: torch.device) -> dict:
    """Held-out quality monitors: loss, per-step rollout error vs copy-last, collapse, probe."""
    model.eval()
    frames, actions = clips["frames"].to(device), clips["actions"].to(device).float()
    labels = clips["probe"].to(device) if "probe" in clips else None  # [B, L, K] when the loss has a probe head
    held_loss = loss_fn(model, frames, actions, probe=labels)
    errors = rollout_error(model, frames, actions)
    z = encode_frames(model.encode, probe["held_frames"], device)
    report = {
        "held_loss": held_loss["loss"].item(),
        "held_prediction": held_loss["prediction"].item(),
        **{f"rollout_err_{h + 1}": v.item() for h, v in enumerate(errors["model"])},
        **{f"copy_last_err_{h + 1}": v.item() for h, v in enumerate(errors["copy_last"])},
        "dim_std": dimension_std(z),
        "effective_rank": effective_rank(z),
    }
    z_train = encode_frames(model.encode, probe["train_frames"], device)
    report.update(probe_report(z_train, probe["train_targets"], z, probe["held_targets"], probe["groups"]))
    model.train()
    return report


def monitor_data(cfg, ds: Dataset, train_eps: np.ndarray, held_eps: np.ndarray, held: WindowSampler,
                 env: int | None, action_dims: list[int] | None) -> tuple[dict, dict]:
    """(held-out clips, probe rows) of one dataset for monitor(), drawn from numpy RNGs of their own
    (the torch RNG is untouched); env: the dataset's env index in a shared model, whose clips' actions
    are then coded (world_model/action_code.py), None for a single-env model."""
    clips = held.fixed(cfg.monitor_clips, seed=1)
    if env is not None:
        clips["actions"] = encode_actions(clips["actions"].float(), env, action_dims)
    train_frames, train_targets = probe_rows(ds, train_eps, cfg.probe_frames, seed=2)
    held_frames, held_targets = probe_rows(ds, held_eps, cfg.probe_held_frames, seed=3)
    return clips, {"train_frames": train_frames, "train_targets": train_targets, "held_frames": held_frames,
                   "held_targets": held_targets, "groups": ds.probe_groups}


def monitor_envs(model: WorldModel, loss_fn: JEPALoss, monitored: dict, weights: list[float],
                 device: torch.device) -> tuple[dict, list[str]]:
    """monitor() on each env's held-out clips and probe rows (monitored: env name -> (clips, probe)),
    and the console lines. One env: its report as it is. Several (a shared model): every key as
    "<env>/<key>", one line per env, and held_loss, the envs' held losses weighed by the mixing
    weights (it picks the best checkpoint)."""
    report, lines = {}, []
    for name, (clips, probe) in monitored.items():
        one = monitor(model, loss_fn, clips, probe, device)
        groups = " ".join(f"{g} {one[f'probe_r2_{g}']:.3f}" for g in probe["groups"])
        line = (f"held loss {one['held_loss']:.3f}, rollout err {one['rollout_err_1']:.3f} "
                f"(copy-last {one['copy_last_err_1']:.3f}), rank {one['effective_rank']:.1f}, probe R2 {groups}")
        if len(monitored) == 1:
            return one, [line]
        report.update({f"{name}/{k}": v for k, v in one.items()})
        lines.append(f"{name}: {line}")
    report["held_loss"] = sum(w * report[f"{name}/held_loss"] for name, w in zip(monitored, weights))
    return report, lines


def check_train_settings(cfg, ranks: int = 1) -> None:
    """Every training setting of `cfg` (a TrainConfig, or a config node with its keys) checked before
    any dataset is read or run folder made (agent.run: before collecting): a bad one is refused in
    one line naming it (SettingError), not in a raw IndexError or ZeroDivisionError, or a message
    about another setting, minutes later. `ranks`: the processes the global batch is split over."""
    sizes = {"steps": cfg.steps, "optim.batch_size": cfg.optim.batch_size, "log_every": cfg.log_every,
             "monitor_every": cfg.monitor_every, "checkpoint_every": cfg.checkpoint_every,
             "monitor_clips": cfg.monitor_clips}
    for name, value in sizes.items():
        if value < 1:
            raise SettingError(f"{name}={value}: it must be at least 1")
    if cfg.optim.batch_size % ranks != 0:
        raise SettingError(
            f"optim.batch_size={cfg.optim.batch_size} does not split evenly over {ranks} processes; "
            "choose a global batch size divisible by the number of processes (torchrun's nnodes x nproc_per_node)"
        )
    if not 0.0 < cfg.held_out_fraction < 1.0:
        # 0 leaves the held-out sampler empty (it used to blame data.steps), 1 leaves nothing to train on
        raise SettingError(
            f"held_out_fraction={cfg.held_out_fraction}: it must lie in (0, 1), because the monitors and the "
            "probe use held-out episodes (the last ones); 0.1 is the default"
        )
    if cfg.probe_frames < 10 or cfg.probe_held_frames < 1:
        # the probe's ridge is chosen by 5-fold cross-validation, which needs 2 rows per fold
        raise SettingError(
            f"probe_frames={cfg.probe_frames}, probe_held_frames={cfg.probe_held_frames}: "
            "the linear probe needs probe_frames >= 10 and probe_held_frames >= 1"
        )
    optim = cfg.optim
    # `not x > 0` rather than `x <= 0`: NaN fails every comparison and must be refused too
    if not (optim.lr > 0 and math.isfinite(optim.lr)):
        raise SettingError(f"optim.lr={optim.lr}: it must be a finite number above 0 (the peak learning rate)")
    if not (optim.grad_clip > 0 and math.isfinite(optim.grad_clip)):
        raise SettingError(f"optim.grad_clip={optim.grad_clip}: it must be a finite number above 0 (the largest "
                           "gradient norm kept; 0 would zero every update)")
    if not optim.weight_decay >= 0:
        raise SettingError(f"optim.weight_decay={optim.weight_decay}: it must be at least 0")
    if optim.warmup_steps < 0:
        raise SettingError(f"optim.warmup_steps={optim.warmup_steps}: it must be at least 0 (0 = no warm-up)")
    if not 0.0 <= optim.min_lr_ratio <= 1.0:
        raise SettingError(f"optim.min_lr_ratio={optim.min_lr_ratio}: it must lie in [0, 1] (the final rate as a "
                           "fraction of the peak)")
    if not 0.0 < optim.decay_fraction <= 1.0:
        raise SettingError(f"optim.decay_fraction={optim.decay_fraction}: it must lie in (0, 1] (1.0 = plain cosine)")
    for section, schema in (("world_model", WorldModelConfig), ("loss", LossConfig)):
        try:  # their own checks (__post_init__); the sizes training takes from the dataset may still be unset
            schema(**plain(getattr(cfg, section)))
        except ValueError as err:
            raise SettingError(f"{section}: {err}") from None


def train(cfg, dataset_root: str | Path, progress: bool = True) -> Path:
    """Trains (or resumes, or reuses) the run described by `cfg` on the dataset at dataset_root;
    returns the run folder. In an initialised process group (torchrun) every rank calls it and
    trains its share of each batch; rank 0 alone writes the run folder. Processes training the same
    run folder take turns (world_model/cache_lock.py): the second reuses what the first trained."""
    ranks = distributed.current()
    check_train_settings(cfg, ranks.world_size)
    folder = run_dir(cfg, dataset_root)
    if (folder / "summary.json").exists():
        print(f"world model already trained at {folder}")
        return folder
    if not ranks.is_main:
        return _train(cfg, dataset_root, folder, ranks, progress)
    # before minutes of training whose checkpoints could not be saved (and before the lock file beside it)
    check_writable(folder, "the world model's run folder", "pass cache_root=<a folder you can write to> "
                   "(or out=FOLDER); a read-only cache serves only the models it already holds")
    # one process trains a run folder at a time: another waits, then finds it trained; under torchrun
    # (whose other ranks would not wait) the run is refused instead
    with building(folder, "the world model", wait=not ranks.distributed):
        if (folder / "summary.json").exists():
            print(f"world model already trained at {folder}")
            return folder
        return _train(cfg, dataset_root, folder, ranks, progress)


def _train(cfg, dataset_root: str | Path, folder: Path, ranks, progress: bool) -> Path:
    """train() into the run folder `folder`, which rank 0 holds the lock of."""
    from tqdm import tqdm

    if checkpoint_exists(folder / "latest") and not cfg.resume:
        raise RuntimeError(
            f"{folder} holds an unfinished run; pass resume=true to continue it, or delete the folder to start over"
        )
    device = pick_device(cfg.device)
    if ranks.distributed:
        device = distributed.rank_device(device)
    roots = dataset_roots(dataset_root)
    datasets = [Dataset(root) for root in roots]
    shared = len(datasets) > 1  # a shared model over the datasets' envs
    weights = mixing_weights(cfg.dataset_weights, len(datasets))
    if shared:
        check_mixture(roots, [ds.manifest for ds in datasets])
    model_cfg = model_config(cfg.world_model, datasets)
    loss_cfg = LossConfig(**plain(cfg.loss))
    length = model_cfg.history + loss_cfg.rollout_steps
    labelled = loss_cfg.probe_weight > 0  # the probe head trains on the dataset's probe targets
    if labelled and shared:
        raise ValueError("loss.probe_weight > 0 is for a single dataset (the envs' probe targets differ in number and "
                         "meaning); train the shared model with loss.probe_weight=0")
    samplers, monitored, episodes = [], {}, 0  # monitored: env name -> (held-out clips, probe rows), rank 0 only
    stats = None  # with the probe term: (mean [K], std [K]) of the one dataset's training targets
    for index, ds in enumerate(datasets):
        train_eps, held_eps = split_episodes(ds.num_episodes, cfg.held_out_fraction)
        samplers.append(WindowSampler(ds, train_eps, length, probe=labelled))
        if labelled:
            stats = probe_stats(ds, train_eps)
        held = WindowSampler(ds, held_eps, length, probe=labelled)
        episodes += len(train_eps)
        if ranks.is_main:  # only rank 0 runs the monitors; the others need not hold their frames
            monitored[ds.env_name] = monitor_data(cfg, ds, train_eps, held_eps, held,
                                                  index if shared else None, model_cfg.env_action_dims)
    sampler = MixtureSampler(samplers, weights, model_cfg.env_action_dims) if shared else samplers[0]

    torch.manual_seed(cfg.seed)
    # Training draws from no other generator, but every checkpoint saves the python and numpy
    # states too (training_state.pt); seeded, they make its bytes a function of the config, as a
    # resumed run's are (it restores them), instead of the entropy the process started with.
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = WorldModel(model_cfg).to(device)
    resuming = cfg.resume and checkpoint_exists(folder / "latest")
    if cfg.init and not resuming:  # a resumed run's weights come from its own checkpoint below
        # before the loss is built: its EMA target encoder (if any) starts as a copy of this encoder
        note = warm_start(model, cfg.init, model_cfg.envs or [datasets[0].env_name])
        if ranks.is_main:
            print(note)
    loss_fn = JEPALoss(loss_cfg, model, stats).to(device)
    optimizer = _optimizer(cfg.optim, [model, loss_fn])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.optim.warmup_steps, cfg.steps, cfg.optim.min_lr_ratio, cfg.optim.decay_fraction)
    )
    step = 0
    best = math.inf
    identity = run_identity(cfg, [ds.manifest["identity"] for ds in datasets], weights)
    recorded = [str(ds.root.resolve()) for ds in datasets]  # a shared model's: in the order of model_cfg.envs
    recorded = recorded if shared else recorded[0]
    distributed.barrier()  # every rank has looked at the run folder before rank 0 changes it
    if ranks.is_main:
        if resuming:
            note = restore_newest(folder / "latest")  # a save killed mid-way leaves only latest.prev complete
            if note:
                print(note)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "config.json", {"identity": identity,
                                                   "dataset": [str(r) for r in roots] if shared else str(roots[0])})
    distributed.barrier()  # the other ranks read latest/ once rank 0 has restored it
    if resuming:
        model.load_state_dict(load(folder / "latest").state_dict())
        step = load_training_state(folder / "latest", optimizer, scheduler, loss_fn)
        best = json.loads((folder / "best.json").read_text())["held_loss"] if (folder / "best.json").exists() else best
        if ranks.is_main:
            print(f"resuming {folder} at step {step}")
    if cfg.compile:
        model.encoder.compile()
        model.predictor.compile()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    if ranks.distributed:
        # gradients of the model and the loss's head averaged over the ranks; every rank starts
        # from rank 0's weights (equal anyway: same seed, same checkpoint)
        step_fn = torch.nn.parallel.DistributedDataParallel(
            distributed.TrainStep(model, loss_fn), device_ids=[device.index] if device.type == "cuda" else None
        )
    else:
        step_fn = functools.partial(loss_fn, model)
    # rows a killed run logged after its checkpoint (or, with no checkpoint, at all) are logged again below
    log = MetricsLog(folder, tensorboard=cfg.tensorboard, resume_step=step) if ranks.is_main else None
    # the dataset is recorded so that whatever is fitted later on this model (a critic) uses its data
    # (a shared model: each env's dataset, in the order of its envs, for the modules fitted per env)
    train_cfg = {"identity": identity, "dataset": recorded}

    def checkpoint(name: str) -> None:
        save(folder / name, model, step, loss_fn=loss_fn, train_cfg=train_cfg, optimizer=optimizer, scheduler=scheduler)

    n_params = sum(p.numel() for p in model.parameters())
    if ranks.is_main:
        where = str(device)
        if ranks.distributed:
            where = f"{ranks.world_size} processes on {device.type} ({cfg.optim.batch_size // ranks.world_size} clips each)"
        print(f"training {n_params / 1e6:.2f}M parameters on {where}, {len(sampler)} clips of {length} frames "
              f"from {episodes} episodes; run folder {folder}")
        if shared:
            print(f"a shared model over envs {', '.join(model_cfg.envs)} (mixing weights "
                  f"{', '.join(f'{w:.3g}' for w in weights)}); the monitors and the probe run per env "
                  "(<env>/<name>), held_loss is the envs' held losses weighed by the mixing weights")
    bar = tqdm(total=cfg.steps, initial=step, unit="step", desc="train", disable=not (progress and ranks.is_main))
    model.train()
    tic, seen = time.perf_counter(), 0
    share = (ranks.rank, ranks.world_size)
    try:
        while step < cfg.steps:
            batch = sampler.sample(cfg.optim.batch_size, generator=None, share=share)
            frames = batch["frames"].to(device, non_blocking=True)
            actions = batch["actions"].to(device, non_blocking=True).float()
            probe = batch["probe"].to(device, non_blocking=True) if labelled else None  # [B, L, K]
            with autocast:
                out = step_fn(frames, actions, probe=probe)
            loss = out["loss"]
            # the terms over the global batch: what is logged, and non-finite on every rank at once
            terms = distributed.mean_over_ranks(out) if ranks.distributed else out
            if not torch.isfinite(terms["loss"]):
                raise TrainingDiverged(
                    f"loss became {terms['loss'].item()} at step {step + 1} (terms: "
                    f"{ {k: round(v.item(), 4) for k, v in terms.items() if k != 'loss'} }); lower optim.lr or "
                    "raise optim.warmup_steps, and resume from latest/ with resume=true"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            if not torch.isfinite(grad_norm):
                raise TrainingDiverged(
                    f"gradient norm became {grad_norm.item()} at step {step + 1}; lower optim.lr or optim.grad_clip "
                    "and resume from latest/ with resume=true"
                )
            optimizer.step()
            scheduler.step()
            loss_fn.update_target(model)
            step += 1
            seen += frames.shape[0] * ranks.world_size
            bar.update(1)
            if ranks.is_main and (step % cfg.log_every == 0 or step == cfg.steps):
                elapsed = time.perf_counter() - tic
                record = {k: v.item() for k, v in terms.items()}
                record.update(lr=scheduler.get_last_lr()[0], grad_norm=grad_norm.item(), samples_per_s=seen / elapsed)
                log.log(step, record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", sps=f"{record['samples_per_s']:.0f}")
                tic, seen = time.perf_counter(), 0
            monitoring = step % cfg.monitor_every == 0 or step == cfg.steps
            saving = step % cfg.checkpoint_every == 0 or step == cfg.steps
            if ranks.is_main and monitoring:
                report, lines = monitor_envs(model, loss_fn, monitored, weights, device)
                log.log(step, report)
                for line in lines:
                    bar.write(f"step {step}: {line}")
                if report["held_loss"] < best:
                    best = report["held_loss"]
                    checkpoint("best")
                    write_json_atomic(folder / "best.json", {"step": step, **report})
                tic, seen = time.perf_counter(), 0  # monitors are not training time
            if ranks.is_main and saving:
                checkpoint("latest")
            if monitoring or saving:
                distributed.barrier()  # the other ranks wait here while rank 0 monitors and saves
        if ranks.is_main:
            log.close()
            with open(folder / "metrics.jsonl") as f:
                last = [json.loads(line) for line in f if "held_loss" in line][-1]
            write_json_atomic(folder / "summary.json", {"step": step, "parameters": n_params, "final": last})
    except WriteError as err:  # a checkpoint, log or summary could not be written: full disk, file-size limit
        raise TrainingStopped(f"training stopped at step {step}: {err}, then run the same command again with "
                              f"resume=true: {_resumes_from(folder)}") from err
    finally:
        bar.close()
    distributed.barrier()  # every rank returns a finished run folder
    return folder


def _register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def main() -> None:
    import hydra

    from world_model.cache_lock import EntryBusy
    from world_model.checkpoint import CheckpointError
    from world_model.cli import one_line_errors
    from world_model.dataset import DatasetError

    _register_configs()

    @hydra.main(version_base="1.3", config_path="../configs", config_name="train")
    def run(cfg) -> None:
        if not cfg.dataset:
            raise SystemExit("error: pass dataset=PATH (a folder made by `python -m agent.collect env=<name>`), "
                             "or dataset=[PATH,PATH] for one world model shared by several envs")
        expected = (DatasetError, CheckpointError, TrainingDiverged, TrainingStopped, EntryBusy)
        with one_line_errors():  # a refused thread count (SettingError) is one line
            use_threads(cfg.threads)
        if not distributed.launched_by_torchrun():
            with one_line_errors(*expected):
                folder = train(cfg, cfg.dataset)
            print(f"world model: {folder / 'latest'}")
            return
        with distributed.joined(pick_device(cfg.device)), one_line_errors(*expected):
            folder = train(cfg, cfg.dataset)
            if distributed.current().is_main:
                print(f"world model: {folder / 'latest'}")

    run()


if __name__ == "__main__":
    sys.exit(main())
