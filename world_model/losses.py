"""The JEPA training loss: latent prediction plus the terms that keep the representation informative."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from world_model.ema import ema_copy, ema_update
from world_model.model import WorldModel

REGULARIZERS = ("vicreg", "barlow")


@dataclass
class LossConfig:
    """Weights and settings of every loss term; a weight of 0 removes the term from the total
    (it is still reported, detached, when it is cheap to compute). The defaults are the shipped loss,
    latent prediction (teacher-forced and a 3-step rollout) with VICReg (configs/loss/vicreg.yaml)."""

    rollout_steps: int = 3
    """R, autoregressive steps; a batch has L = history + R frames."""
    prediction_weight: float = 1.0
    """Teacher-forced next-latent MSE over every window of the clip."""
    rollout_weight: float = 1.0
    """MSE of the R-step autoregressive rollout from the first `history` latents."""
    ema_target: bool = False
    """Targets from an EMA copy of the encoder, not the online one (stop-gradient either way)."""
    ema_momentum: float = 0.996
    """EMA momentum; call JEPALoss.update_target after each optimizer step."""
    regularizer: str = "vicreg"
    """Anti-collapse term: "vicreg" (variance + covariance) or "barlow"."""
    variance_weight: float = 1.0
    """VICReg hinge pushing each dimension's std over the batch up to variance_target."""
    variance_target: float = 1.0
    """Std each dimension should reach."""
    covariance_weight: float = 1.0
    """VICReg off-diagonal covariance penalty (decorrelates dimensions)."""
    barlow_weight: float = 1.0
    """Barlow Twins: predicted vs target cross-correlation pushed to identity."""
    barlow_off_diagonal: float = 0.005
    """Relative weight of the off-diagonal part of the Barlow term."""
    motion_weight: float = 1.0
    """Hinge keeping each dimension's std of z_{t+1} - z_t above motion_floor."""
    motion_floor: float = 0.1
    """Minimum per-dimension spread of frame-to-frame change."""
    inverse_dynamics_weight: float = 2.0
    """MSE of an MLP predicting a_t from (z_{t-1}, z_t, z_{t+1}); 0 builds no head."""
    inverse_dynamics_hidden: int = 256
    """Hidden width of that MLP."""
    smoothness_weight: float = 0.0
    """Mean squared z_{t+1} - z_t; works against motion spread, so off by default."""
    probe_weight: float = 0.0
    """MSE of a linear head reading the dataset's probe targets (standardised; e.g. positions and an
    angle's cos and sin) off every frame's latent. It makes the encoder keep what the env declares
    its state to be in a linear form, but trains on the simulator's labels, not on frames and actions
    alone (docs/NOTEBOOK.md, "Teaching the encoder the block's angle"); 0: no head, no labels."""
    probe_rollout_weight: float = 0.0
    """MSE of the same head on the R-step rollout's predicted latents against the targets of the
    frames they predict, so the predictor is also graded in the probe's units (needs probe_weight > 0)."""

    def __post_init__(self):
        if self.probe_rollout_weight > 0 and self.probe_weight <= 0:
            raise ValueError(f"probe_rollout_weight={self.probe_rollout_weight} grades predictions with the probe head, "
                             "which only probe_weight > 0 builds; set probe_weight too")
        if self.rollout_steps < 1:
            raise ValueError(f"rollout_steps must be >= 1, got {self.rollout_steps}")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer {self.regularizer!r} is unknown; use one of {REGULARIZERS}")
        if not 0.0 <= self.ema_momentum <= 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1], got {self.ema_momentum}")


def vicreg_variance(z: Tensor, target: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Hinge on per-dimension std. z [N, D] -> scalar mean over D of relu(target - std)."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(target - std).mean()


def vicreg_covariance(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances divided by D. z [N, D] -> scalar."""
    n, d = z.shape
    zc = z.float() - z.float().mean(dim=0)
    with torch.autocast(z.device.type, enabled=False):  # bf16 products would swamp small covariances
        cov = zc.T @ zc / (n - 1)  # [D, D]
    off = cov - torch.diag(torch.diag(cov))
    return off.square().sum() / d


def barlow_twins(a: Tensor, b: Tensor, off_diagonal: float, eps: float = 1e-5) -> Tensor:
    """Cross-correlation of standardised a and b pushed to identity, divided by D.
    a, b [N, D] -> scalar."""
    n, d = a.shape
    a, b = a.float(), b.float()
    a = (a - a.mean(0)) / (a.std(0) + eps)
    b = (b - b.mean(0)) / (b.std(0) + eps)
    with torch.autocast(a.device.type, enabled=False):  # correlations in float32 even under bf16 autocast
        c = a.T @ b / (n - 1)  # [D, D]
    on = (torch.diagonal(c) - 1).square().sum()
    off = (c - torch.diag(torch.diagonal(c))).square().sum()
    return (on + off_diagonal * off) / d


def motion_spread(z: Tensor, floor: float, eps: float = 1e-4) -> Tensor:
    """Hinge keeping the per-dimension std of frame-to-frame change above `floor`.

    Without it the prediction loss is minimised by encoding only what never moves (the
    target) and dropping the arm; change that varies across samples must stay visible.
    z [B, L, D] -> scalar.
    """
    dz = (z[:, 1:] - z[:, :-1]).flatten(0, 1)  # [B*(L-1), D]
    return F.relu(floor - torch.sqrt(dz.var(dim=0) + eps)).mean()


def _windows(x: Tensor, k: int) -> Tensor:
    """All windows of k consecutive steps, folded into the batch: [B, T, F] -> [B*(T-k+1), k, F]."""
    # unfold gives [B, T-k+1, F, k]; put the window's time axis before features
    return x.unfold(1, k, 1).permute(0, 1, 3, 2).reshape(-1, k, x.shape[-1])


class JEPALoss(nn.Module):
    """Computes every loss term of one batch.

    Owns the trainable inverse-dynamics head and, with ema_target, the frozen EMA encoder;
    optimise `model.parameters()` together with `loss_fn.trainable_parameters()`.
    """

    def __init__(self, cfg: LossConfig, model: WorldModel, probe_stats: tuple[Tensor, Tensor] | None = None):
        """probe_stats: (mean [K], std [K]) of the dataset's probe targets, which standardise them for
        the probe head; required when cfg.probe_weight > 0 (world_model.train passes them)."""
        super().__init__()
        self.cfg = cfg
        self.history = model.cfg.history
        d, a = model.cfg.latent_dim, model.cfg.action_dim
        self.inverse_dynamics = None
        if cfg.inverse_dynamics_weight > 0:
            h = cfg.inverse_dynamics_hidden
            self.inverse_dynamics = nn.Sequential(
                nn.Linear(3 * d, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, a)
            )
        self.probe_head = None
        if cfg.probe_weight > 0:
            if probe_stats is None:
                raise ValueError("loss.probe_weight > 0 reads the dataset's probe targets, but none were given; "
                                 "train on a dataset whose env declares probe targets, or set loss.probe_weight=0")
            mean, std = (torch.as_tensor(v, dtype=torch.float32) for v in probe_stats)
            self.register_buffer("probe_mean", mean.clone())
            self.register_buffer("probe_std", std.clone().clamp_min(1e-6))
            # linear on purpose: what it reads must be linear in the latent, which is what the L2 goal
            # energy compares
            self.probe_head = nn.Linear(d, mean.shape[0])
        self.target_encoder = ema_copy(model.encoder) if cfg.ema_target else None

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer should update (the EMA encoder is excluded)."""
        return [p for p in self.parameters() if p.requires_grad]

    def update_target(self, model: WorldModel) -> None:
        """EMA step of the target encoder toward model.encoder; no-op without ema_target."""
        if self.target_encoder is not None:
            ema_update(self.target_encoder, model.encoder, self.cfg.ema_momentum)

    def forward(
        self, model: WorldModel, frames: Tensor, actions: Tensor, gather: Callable[[Tensor], Tensor] | None = None,
        probe: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Args:
            model: the world model being trained
            frames: uint8 [B, L, H, W, 3], L = history + rollout_steps consecutive frames
            actions: float [B, L-1, A]; actions[:, t] leads from frame t to frame t+1
            gather: in data-parallel training, [B, ...] -> [ranks * B, ...], every rank's rows with
                gradients (world_model.distributed.gather): the batch statistics (VICReg variance
                and covariance, Barlow, motion spread) are then those of the global batch, as in one
                process. None: this batch alone.
            probe: float [B, L, K], every frame's probe targets (needed when probe_weight > 0)
        Returns:
            dict of scalar tensors: "loss" (the weighted total, with gradients) and every named term
        """
        cfg, k = self.cfg, self.history
        length = k + cfg.rollout_steps
        if frames.ndim != 5 or frames.shape[1] != length:
            raise ValueError(
                f"frames must be [B, L, H, W, 3] with L = history + rollout_steps = {length}, "
                f"got {tuple(frames.shape)}; sample clips of {length} frames"
            )
        if actions.shape[:2] != (frames.shape[0], length - 1):
            raise ValueError(
                f"actions must be [B, L-1, A] = [{frames.shape[0]}, {length - 1}, A], got {tuple(actions.shape)}; "
                "actions[:, t] leads from frame t to t+1"
            )
        # float32 for the statistics below even when the encoder ran under bf16 autocast
        z = model.encode(frames).float()  # [B, L, D]
        d = z.shape[-1]
        if self.target_encoder is not None:
            with torch.no_grad():
                target = self.target_encoder(frames).float()  # [B, L, D]
        else:
            target = z.detach()  # stop-gradient: targets may not move to meet the predictions

        # autoregressive: from the first K latents, R steps with predictions fed back
        rolled = model.rollout(z[:, :k], actions[:, k - 1 :], past_actions=actions[:, : k - 1])  # [B, R, D]
        # teacher-forced: every window of K consecutive latents predicts the K latents one step later
        predicted = model.predictor(_windows(z[:, :-1], k), _windows(actions, k))  # [B*(L-K), K, D]
        terms = {
            "prediction": F.mse_loss(predicted, _windows(target[:, 1:], k)),
            "rollout": F.mse_loss(rolled, target[:, k:]),
        }

        # the batch statistics below see every rank's rows: [B', L, D], B' = ranks * B (B in one process)
        z_all = z if gather is None else gather(z)
        if cfg.regularizer == "vicreg":
            frames_z = z_all.reshape(-1, d)  # [B'*L, D], every frame of the batch
            terms["variance"] = vicreg_variance(frames_z, cfg.variance_target)
            terms["covariance"] = vicreg_covariance(frames_z)
        else:
            # the regularizer is about the online encoder, so its target side keeps gradients
            # (unless targets come from the EMA encoder, which has none)
            side = target if self.target_encoder is not None else z
            pred_all = torch.cat([predicted.reshape(-1, d), rolled.reshape(-1, d)])  # [N, D]
            side_all = torch.cat([_windows(side[:, 1:], k).reshape(-1, d), side[:, k:].reshape(-1, d)])  # [N, D]
            if gather is not None:
                pred_all, side_all = gather(pred_all), gather(side_all)  # [ranks * N, D]
            terms["barlow"] = barlow_twins(pred_all, side_all, cfg.barlow_off_diagonal)
        terms["motion"] = motion_spread(z_all, cfg.motion_floor)
        terms["smoothness"] = (z[:, 1:] - z[:, :-1]).square().mean()
        if self.inverse_dynamics is not None:
            # Two frames show positions only; the action changes velocity, so the head also sees
            # the frame before: (z_{t-1}, z_t, z_{t+1}) -> a_t. From a pair it cannot tell the
            # action from the momentum already there, and stays near chance.
            triples = torch.cat([z[:, :-2], z[:, 1:-1], z[:, 2:]], dim=-1)  # [B, L-2, 3D]
            terms["inverse_dynamics"] = F.mse_loss(self.inverse_dynamics(triples), actions[:, 1:])
        if self.probe_head is not None:
            if probe is None or probe.shape[:2] != frames.shape[:2]:
                raise ValueError(f"probe_weight > 0 needs the probe targets of every frame, [B, L, K] = "
                                 f"[{frames.shape[0]}, {length}, K], got {None if probe is None else tuple(probe.shape)}")
            target_y = (probe.float() - self.probe_mean) / self.probe_std  # [B, L, K]
            terms["probe"] = F.mse_loss(self.probe_head(z), target_y)
            terms["probe_rollout"] = F.mse_loss(self.probe_head(rolled), target_y[:, k:])

        weights = {
            "prediction": cfg.prediction_weight,
            "rollout": cfg.rollout_weight,
            "variance": cfg.variance_weight,
            "covariance": cfg.covariance_weight,
            "barlow": cfg.barlow_weight,
            "motion": cfg.motion_weight,
            "smoothness": cfg.smoothness_weight,
            "inverse_dynamics": cfg.inverse_dynamics_weight,
            "probe": cfg.probe_weight,
            "probe_rollout": cfg.probe_rollout_weight,
        }
        total = sum(weights[name] * value for name, value in terms.items() if weights[name] > 0)
        if not torch.is_tensor(total):
            raise ValueError("every loss weight is 0; set at least prediction_weight or rollout_weight above 0")
        out = {name: value.detach() for name, value in terms.items()}
        out["loss"] = total
        return out
