"""A predictor refitted on the frozen encoder's latents, graded also in the env's probe units, which
replaces the world model's own predictor for planning.

Why: the loss of the predictor trained with the encoder weighs every latent number alike, so a part
of the scene that changes few of them (a pushed object) can be predicted no better than by holding
the last latent while the agent is predicted well (docs/NOTEBOOK.md, "A predictor refitted on frozen
latents"). Grading that predictor by a probe of its predictions slows the encoder's latents down
instead (`loss.probe_rollout_weight`). With the encoder frozen, nothing but the predictor can answer that
grade, no frame is encoded per step (many more windows per second), and the predictor can be wider
than the one trained with the encoder.

The loss, per window of `history` true latents and the `rollout` that follow: the teacher-forced
one-step error and the open-loop rollout error (mean squared, the energy's units), plus
`probe_weight` times the same two errors read through a linear probe of the env's probe targets
(ridge, fitted once on training latents; each target in units of its standard deviation). Windows are
drawn alike, or with `hard_fraction` of each batch from the windows in which one probe group moves most
(`hard_group`, `hard_top`): on Push-T those in which the block turns, the pushes the planner's failing episodes
are lost to (docs/NOTEBOOK.md, "Push-T `push` with the true dynamics"). The
result is a checkpoint (world_model/checkpoint.py) whose encoder weights are the base model's,
whose predictor is the refit, and whose train_config records what it was refitted from; it is
cached by (base weights, dataset, config) like the fitted modules.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from world_model.cache_key import cache_key
from world_model.checkpoint import WEIGHTS, save
from world_model.ensemble import latent_windows
from world_model.fitted import check_at_least_one, check_held_out_fraction, check_positive
from world_model.latents import EpisodeLatents, episode_probe, split_latents
from world_model.losses import LossConfig
from world_model.model import WorldModel, WorldModelConfig
from world_model.monitors import ridge_cv, ridge_fit
from world_model.predictor import Predictor
from world_model.windows import split_episodes


@dataclass
class RefitConfig:
    """The refitted predictor and its training (on detached latents of a trained world model)."""

    steps: int = 0
    """Optimiser steps; 0: no refit, the world model plans with the predictor it was trained with."""
    width: int = 256
    """The refitted predictor's transformer width (its predicted changes span at most this many
    directions of the latent)."""
    depth: int = 3
    """Its transformer blocks."""
    heads: int = 4
    """Its attention heads."""
    batch_size: int = 128
    """Windows per step (256 planned no better at twice the training time: docs/NOTEBOOK.md, "A predictor
    refitted on frozen latents")."""
    rollout: int = 5
    """R, open-loop steps graded per window: the planner's horizon, so the refit is graded where
    plans are scored."""
    lr: float = 1.0e-3
    """AdamW peak learning rate (linear warm-up, then cosine decay to 0 at `steps`)."""
    warmup_steps: int = 200
    """Steps of linear warm-up."""
    probe_weight: float = 1.0
    """Weight of the errors read through the linear probe of the env's probe targets; 0: latent
    errors only (then any env's dataset will do, probe targets or not)."""
    probe_rows: int = 10000
    """Training frames the linear probe is fitted on."""
    hard_fraction: float = 0.0
    """Share of every batch's windows drawn from the hard windows alone (`hard_group`, `hard_top`) rather
    than from all alike; 0: every window alike."""
    hard_group: str = ""
    """The env's probe group (envs/<family>: probe_groups) whose change over a window's rollout marks
    it hard: its targets' summed step-to-step distance over the rollout's R steps. Needed when
    hard_fraction > 0."""
    hard_top: float = 0.2
    """The hard windows: this top fraction of the training windows by that change."""
    held_out_fraction: float = 0.1
    """Last episodes kept out of training (the same split as the world model's)."""
    seed: int = 0
    """Seeds the initialisation and the window draws."""
    from_model: bool = False
    """Start from the world model's own predictor instead of fresh weights, so the refit only has to
    learn what the probe grade and the longer rollout add, in fewer steps; width, depth and heads are
    then the model's (`for_model`), whatever is set."""

    def __post_init__(self):
        check_at_least_one(self, "refit", ("width", "depth", "heads", "batch_size", "rollout", "probe_rows"))
        check_positive(self, "refit", ("lr",))
        if self.steps < 0 or self.warmup_steps < 0 or self.probe_weight < 0:
            raise ValueError(f"refit.steps={self.steps}, refit.warmup_steps={self.warmup_steps} and "
                             f"refit.probe_weight={self.probe_weight} must be at least 0")
        if self.width % self.heads:
            raise ValueError(f"refit.width={self.width} is not divisible by refit.heads={self.heads}; change one")
        if not (0 <= self.hard_fraction <= 1 and 0 < self.hard_top <= 1):
            raise ValueError(f"refit.hard_fraction={self.hard_fraction} must lie in [0, 1] and refit.hard_top="
                             f"{self.hard_top} in (0, 1]")
        if self.hard_fraction > 0 and not self.hard_group:
            raise ValueError(f"refit.hard_fraction={self.hard_fraction} draws hard windows, which refit.hard_group "
                             "names: set it to one of the env's probe groups (e.g. angle on Push-T), or hard_fraction=0")
        check_held_out_fraction(self, "refit")


class LinearProbe:
    """A fixed affine map from latents [..., D] to probe targets in units of their standard deviation
    [..., K], differentiable in the latents (the ridge fit is not)."""

    def __init__(self, z: Tensor, y: Tensor):
        """z [N, D] training latents, y [N, K] their probe targets."""
        fit = ridge_fit(z, y, ridge_cv(z, y))
        scale = y.double().std(0) + 1e-8  # [K]
        weight = fit.weights[:-1] / fit.std[:, None]  # [D, K]: the standardisation folded into the map
        self.weight = (weight / scale).float()
        self.bias = ((fit.weights[-1] - fit.mean @ weight) / scale).float()  # [K]
        self.scale = scale.float()

    def __call__(self, z: Tensor) -> Tensor:
        return z @ self.weight + self.bias

    def error(self, z: Tensor, y: Tensor) -> Tensor:
        """Mean squared error of the map of z [..., D] against targets y [..., K], in standard deviations."""
        return (self(z) - y / self.scale).square().mean()


def _losses(predictor: Predictor, zw: Tensor, aw: Tensor, yw: Tensor | None, probe: LinearProbe | None,
            history: int, rollout: int) -> tuple[Tensor, Tensor]:
    """(latent error, probe error; 0 without a probe) of windows zw [b, K + R, D], aw [b, K - 1 + R, A],
    yw [b, K + R, P]: each the teacher-forced one-step error plus the R-step open-loop rollout error."""
    one = predictor(zw[:, :history], aw[:, :history])[:, -1]  # [b, D], the prediction of z_K
    run = predictor.rollout(zw[:, :history], aw, rollout)  # [b, R, D]
    latent = (one - zw[:, history]).square().mean() + (run - zw[:, history:]).square().mean()
    if probe is None:
        return latent, torch.zeros((), device=zw.device)
    return latent, probe.error(one, yw[:, history]) + probe.error(run, yw[:, history:])


@torch.no_grad()
def held_out_errors(predictor: Predictor, z: Tensor, a: Tensor, history: int, rollout: int,
                    windows: int = 2048) -> list[float]:
    """The mean squared open-loop error 1 .. rollout steps ahead on random windows of z [E, T, D]
    with actions a [E, T, A] (the same windows for any predictor)."""
    zw, aw, target = latent_windows(z, a, history, windows, torch.Generator().manual_seed(1), rollout)
    return (predictor.rollout(zw, aw, rollout) - target).square().mean((0, 2)).tolist()


def hard_starts(y: Tensor, columns: list[int], history: int, rollout: int, top: float) -> Tensor:
    """The windows in which the probe targets `columns` of y [E, T, P] change most over the rollout:
    [M, 2] (episode, first frame) of the top `top` fraction of all windows of `history` + `rollout`
    frames, ranked by the targets' summed step-to-step distance over the rollout's steps."""
    step = (y[:, 1:, columns] - y[:, :-1, columns]).double().norm(dim=-1)  # [E, T - 1], frame j -> j + 1
    run = torch.nn.functional.pad(step.cumsum(1), (1, 0))  # [E, T], run[:, j] = sum of steps before frame j
    starts = y.shape[1] - history - rollout + 1
    t = torch.arange(starts, device=y.device)
    change = run[:, t + history - 1 + rollout] - run[:, t + history - 1]  # [E, starts]
    chosen = change.flatten().topk(max(1, round(top * change.numel()))).indices
    return torch.stack([chosen // starts, chosen % starts], 1)


def fit_predictor(z_train: Tensor, a_train: Tensor, y_train: Tensor | None, history: int, cfg: RefitConfig,
                  progress: bool = True, extra: tuple[Tensor, Tensor, Tensor | None] | None = None,
                  extra_fraction: float = 0.0, init: Predictor | None = None,
                  hard_columns: list[int] | None = None) -> Predictor:
    """A Predictor (cfg's width, depth, heads) fitted to latent episodes z_train [E, T, D] with
    actions a_train [E, T, A] and probe targets y_train [E, T, P] (None: latent errors only, needs
    cfg.probe_weight 0); device follows the latents. Returned in eval mode.

    extra: more episodes (z [E', T', D], actions [E', T', A], probe targets [E', T', P] or None as
    y_train), from which `extra_fraction` of every batch's windows are drawn (the planner's own
    episodes: agent/onpolicy.py); init: a predictor of the same shape whose weights it starts from
    (a copy; None: a fresh one seeded by cfg.seed). The probe is fitted on z_train alone either way.
    hard_columns: the columns of y_train of cfg.hard_group, needed when cfg.hard_fraction > 0:
    that share of every batch is drawn from z_train's hard windows (hard_starts)."""
    from tqdm import tqdm

    for z in (z_train,) + ((extra[0],) if extra is not None else ()):
        if z.shape[1] < history + cfg.rollout:
            raise ValueError(f"episodes of {z.shape[1]} frames are too short for a {history}-frame history and "
                             f"refit.rollout={cfg.rollout}; lower it")
    n_extra = round(extra_fraction * cfg.batch_size) if extra is not None else 0
    n_hard = round(cfg.hard_fraction * cfg.batch_size)
    if n_hard and (y_train is None or not hard_columns):
        raise ValueError("refit.hard_fraction > 0 ranks windows by the probe targets of refit.hard_group, which "
                         "this dataset does not record; set refit.hard_fraction=0")
    if n_extra + n_hard > cfg.batch_size:
        raise ValueError(f"{n_extra} extra and {n_hard} hard windows do not fit a batch of refit.batch_size="
                         f"{cfg.batch_size}; lower one share")
    if n_extra and (y_train is None) != (extra[2] is None):
        raise ValueError("the extra episodes need probe targets exactly when the training episodes have them")
    if cfg.probe_weight > 0 and y_train is None:
        raise ValueError("refit.probe_weight > 0 grades predictions by the env's probe targets, which this dataset "
                         "does not record; set refit.probe_weight=0")
    g = torch.Generator().manual_seed(cfg.seed)
    probe = None
    if cfg.probe_weight > 0:
        rows = torch.randint(z_train.shape[0] * z_train.shape[1], (cfg.probe_rows,), generator=g).to(z_train.device)
        probe = LinearProbe(z_train.flatten(0, 1)[rows].double(), y_train.flatten(0, 1)[rows].double())
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
        torch.manual_seed(cfg.seed)
        predictor = Predictor(z_train.shape[-1], a_train.shape[-1], cfg.width, cfg.depth, cfg.heads,
                              history).to(z_train.device)
    if init is not None:
        predictor.load_state_dict(init.state_dict())
    opt = torch.optim.AdamW(predictor.parameters(), lr=cfg.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1))
                                                 * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    # the probe targets travel with the latents as extra columns, so one draw gives both
    def joined(z: Tensor, y: Tensor | None) -> Tensor:
        return z if y is None else torch.cat([z, y.to(z.dtype)], -1)  # [E, T, D (+ P)]

    train = joined(z_train, y_train)
    sources = [(train, a_train, cfg.batch_size - n_extra - n_hard)]
    if n_extra:
        sources.append((joined(extra[0], extra[2] if y_train is not None else None), extra[1], n_extra))
    hard = hard_starts(y_train, hard_columns, history, cfg.rollout, cfg.hard_top).to(z_train.device) if n_hard else None
    d = z_train.shape[-1]
    predictor.train()
    for _ in tqdm(range(cfg.steps), desc="predictor refit", unit="step", disable=not progress):
        drawn = [latent_windows(zy, a, history, size, g, cfg.rollout) for zy, a, size in sources if size]
        if n_hard:
            drawn.append(latent_windows(train, a_train, history, n_hard, g, cfg.rollout, starts=hard))
        window = torch.cat([torch.cat([start, after], 1) for start, _, after in drawn])  # [b, K + R, D (+ P)]
        aw = torch.cat([a for _, a, _ in drawn])  # [b, K - 1 + R, A]
        latent, probed = _losses(predictor, window[..., :d], aw, window[..., d:], probe, history, cfg.rollout)
        loss = latent + cfg.probe_weight * probed
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(predictor.parameters(), 1.0)
        opt.step()
        schedule.step()
    return predictor.eval()


def for_model(cfg: RefitConfig, model_cfg: WorldModelConfig) -> RefitConfig:
    """cfg as it refits a model of config `model_cfg`: with from_model, the refit's width, depth and
    heads are the model's predictor's."""
    if not cfg.from_model:
        return cfg
    return dataclasses.replace(cfg, width=model_cfg.predictor_width, depth=model_cfg.predictor_depth,
                               heads=model_cfg.predictor_heads)


def _split(wm: WorldModel, dataset, cfg: RefitConfig, device: torch.device, latents: EpisodeLatents | None = None):
    """The dataset's episodes encoded by wm's frozen encoder (or taken from `latents`), split as the refit
    splits them -> (z_train [E, T, D], a_train [E, T, A], y_train [E, T, K] or None, z_held, a_held): the
    probe targets of the train split only where the refit trains a probe and the env records them."""
    latents = latents or EpisodeLatents(wm, dataset, device)
    z_train, a_train, z_held, a_held = split_latents(latents, dataset, cfg.held_out_fraction, device)
    y_train = None
    if cfg.probe_weight > 0 and dataset.manifest["env"].get("probe_groups"):
        y_train = episode_probe(dataset, split_episodes(dataset.num_episodes, cfg.held_out_fraction)[0], device)
    return z_train, a_train, y_train, z_held, a_held


def _hard_columns(dataset, cfg: RefitConfig) -> list[int] | None:
    """The columns of the dataset's probe targets that form cfg.hard_group (None when no hard windows are drawn)."""
    if cfg.hard_fraction == 0:
        return None
    groups = dataset.manifest["env"].get("probe_groups") or {}
    if cfg.hard_group not in groups:
        raise ValueError(f"refit.hard_group={cfg.hard_group!r} is not a probe group of env "
                         f"{dataset.manifest['env'].get('name')}; its groups are {list(groups)}")
    names = [name for group in groups.values() for name in group]  # the probe targets' order
    return [names.index(name) for name in groups[cfg.hard_group]]


def train_refit(wm: WorldModel, dataset, cfg: RefitConfig, device: torch.device, progress: bool = True,
                latents: EpisodeLatents | None = None) -> tuple[WorldModel, dict]:
    """Encodes the dataset with the frozen world model `wm` (or takes its latents from `latents`) and
    fits a predictor on the train split; returns a world model with wm's encoder and the refitted
    predictor (eval mode, on `device`), and statistics: held-out open-loop errors 1 .. rollout steps
    ahead of the refit and of wm's own predictor on the same windows."""
    if cfg.steps < 1:
        raise ValueError("refit.steps=0 asks for no refit; there is nothing to train")
    if wm.cfg.envs is not None:
        raise ValueError("refit.steps > 0 refits a single-env model's predictor, and this is a shared model; "
                         "set refit.steps=0")
    cfg = for_model(cfg, wm.cfg)
    start = time.perf_counter()
    z_train, a_train, y_train, z_held, a_held = _split(wm, dataset, cfg, device, latents)
    encode_s = time.perf_counter() - start
    predictor = fit_predictor(z_train, a_train, y_train, wm.cfg.history, cfg, progress,
                              init=wm.predictor if cfg.from_model else None, hard_columns=_hard_columns(dataset, cfg))
    config = WorldModelConfig(**{**dataclasses.asdict(wm.cfg), "predictor_width": cfg.width,
                                 "predictor_depth": cfg.depth, "predictor_heads": cfg.heads})
    refitted = WorldModel(config).to(device)
    state = {k: v for k, v in wm.state_dict().items() if not k.startswith("predictor.")}
    state.update({f"predictor.{k}": v for k, v in predictor.state_dict().items()})
    refitted.load_state_dict(state)
    stats = {"held_out_error": held_out_errors(predictor, z_held, a_held, wm.cfg.history, cfg.rollout),
             "held_out_error_before": held_out_errors(wm.predictor, z_held, a_held, wm.cfg.history, cfg.rollout),
             "encode_s": encode_s, "train_s": time.perf_counter() - start - encode_s}
    return refitted.eval(), stats


def finetune_refit(wm: WorldModel, dataset, onpolicy, cfg: RefitConfig, fraction: float, device: torch.device,
                   progress: bool = True, latents: EpisodeLatents | None = None) -> tuple[WorldModel, dict]:
    """Goes on training the predictor of `wm` (a refitted model) for cfg.steps at cfg.lr on the train
    split of `dataset` (its latents from `latents` when given) with `fraction` of every batch drawn
    from the train split of `onpolicy` (episodes the planner played with wm: agent/onpolicy.py);
    returns the model with the new predictor (eval mode, on `device`) and statistics: held-out
    open-loop errors 1 .. rollout steps ahead, before and after, on held-out episodes of both."""
    start = time.perf_counter()
    z_train, a_train, y_train, z_held, a_held = _split(wm, dataset, cfg, device, latents)
    o_train, oa_train, y_extra, o_held, oa_held = _split(wm, onpolicy, cfg, device)
    encode_s = time.perf_counter() - start
    history = wm.cfg.history
    before = {"held_out_error_before": held_out_errors(wm.predictor, z_held, a_held, history, cfg.rollout),
              "onpolicy_held_out_error_before": held_out_errors(wm.predictor, o_held, oa_held, history, cfg.rollout)}
    predictor = fit_predictor(z_train, a_train, y_train, history, cfg, progress, extra=(o_train, oa_train, y_extra),
                              extra_fraction=fraction, init=wm.predictor, hard_columns=_hard_columns(dataset, cfg))
    tuned = WorldModel(wm.cfg).to(device)
    tuned.load_state_dict({**wm.state_dict(), **{f"predictor.{k}": v for k, v in predictor.state_dict().items()}})
    stats = {"held_out_error": held_out_errors(predictor, z_held, a_held, history, cfg.rollout),
             "onpolicy_held_out_error": held_out_errors(predictor, o_held, oa_held, history, cfg.rollout), **before,
             "encode_s": encode_s, "train_s": time.perf_counter() - start - encode_s}
    return tuned.eval(), stats


def refit_key(weights_sha256: str, dataset_name: str, cfg: RefitConfig) -> str:
    """Cache key: the base world model's weights (by their recorded hash), the dataset and the config."""
    refit = dataclasses.asdict(cfg)
    if not refit["from_model"]:  # unset: the key a refit had before the setting existed
        del refit["from_model"]
    identity = {"weights": weights_sha256, "dataset": dataset_name, "refit": refit}
    return cache_key(identity)


def save_refit(folder: Path, model: WorldModel, base_manifest: dict, cfg: RefitConfig, stats: dict,
               onpolicy: dict | None = None) -> Path:
    """The refitted model as a checkpoint folder: the base's step, loss and train config, with
    train_config["refit"] naming the base weights, the refit's config and its statistics. onpolicy:
    for a refit fine-tuned on the planner's own episodes (finetune_refit; base_manifest is then the
    refit it went on from), what they were; the base's own refit entry is kept under "previous"."""
    base_weights = base_manifest["files"][WEIGHTS]["sha256"]
    entry = {"of": base_weights, "config": dataclasses.asdict(cfg), "stats": stats}
    previous = (base_manifest.get("train_config") or {}).get("refit")
    if onpolicy is not None:
        entry.update(onpolicy=onpolicy, previous=previous)
    train_cfg = {**(base_manifest.get("train_config") or {}), "refit": entry}
    loss = base_manifest.get("loss_config")
    return save(folder, model, base_manifest["step"], loss_cfg=LossConfig(**loss) if loss else None,
                train_cfg=train_cfg)


def is_refit(manifest: dict) -> bool:
    """Whether a checkpoint (its manifest) holds a refitted predictor already."""
    return "refit" in (manifest.get("train_config") or {})


def refit_base(manifest: dict) -> str | None:
    """The sha256 of the base weights a refitted checkpoint (its manifest) was refitted from; None for no refit."""
    return ((manifest.get("train_config") or {}).get("refit") or {}).get("of")


def is_onpolicy(manifest: dict) -> bool:
    """Whether a checkpoint (its manifest) holds a refit fine-tuned on the planner's own episodes already."""
    return "onpolicy" in ((manifest.get("train_config") or {}).get("refit") or {})
