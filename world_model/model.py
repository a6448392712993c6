"""The JEPA world model: encoder + action-conditioned predictor, and its configuration."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from world_model.encoder import GRID, REPRESENTATIONS, Encoder, stem_strides
from world_model.predictor import Predictor

METRICS = ("l2", "l1")


@dataclass
class WorldModelConfig:
    """Every hyperparameter of WorldModel; WorldModel(cfg) builds from it and checkpoints store it."""

    image_size: int | None = None  # square frame side in pixels: 32, 64, 96 or 128 (training takes the dataset's)
    action_dim: int | None = None  # A, size of one action vector (training takes the dataset's)
    representation: str = "tokens"  # "pooled": one attention-pooled vector; "tokens": 64 per-cell vectors, flattened
    dim: int = 128  # D of the pooled representation (ignored by "tokens")
    token_dim: int = 4  # per-cell size for "tokens"; then D = 64 * token_dim
    stem_channels: int = 16  # channels of the first conv stage, doubling per stage up to encoder_width
    encoder_width: int = 64  # transformer width over the 8x8 tokens
    encoder_depth: int = 2  # transformer blocks in the encoder
    encoder_heads: int = 4  # attention heads in the encoder
    predictor_width: int = 128  # predictor transformer width
    predictor_depth: int = 2  # predictor blocks
    predictor_heads: int = 4  # predictor attention heads
    history: int = 2  # K, latents the predictor sees to predict the next one
    metric: str = "l2"  # default energy: "l2" (mean squared difference) or "l1" (mean absolute)

    def __post_init__(self):
        # image_size and action_dim may stay None in a config that training completes from its
        # dataset; WorldModel refuses them unset.
        if self.image_size is not None:
            stem_strides(self.image_size)  # raises with the list of valid sizes
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"representation {self.representation!r} is unknown; use one of {REPRESENTATIONS}")
        if self.metric not in METRICS:
            raise ValueError(f"metric {self.metric!r} is unknown; use one of {METRICS}")
        for name in ("dim", "token_dim", "stem_channels", "history", "encoder_depth", "predictor_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for width, heads in (("encoder_width", "encoder_heads"), ("predictor_width", "predictor_heads")):
            if getattr(self, width) % getattr(self, heads) != 0:
                raise ValueError(
                    f"{width}={getattr(self, width)} is not divisible by {heads}={getattr(self, heads)}; change one"
                )

    @property
    def latent_dim(self) -> int:
        """D, the size of the flat per-frame representation."""
        return self.dim if self.representation == "pooled" else GRID * GRID * self.token_dim


class WorldModel(nn.Module):
    """Encoder + predictor with the public API used by training and planning.

    Action convention everywhere: the action at index t is applied after frame t and leads to frame t+1.
    The model lives on whatever device the user moves it to; inputs must be on that device.
    """

    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        for name in ("image_size", "action_dim"):
            if getattr(cfg, name) is None or getattr(cfg, name) < 1:
                raise ValueError(f"world_model.{name}={getattr(cfg, name)}; set it, or train on a dataset, which sets it")
        self.cfg = cfg
        self.encoder = Encoder(
            image_size=cfg.image_size,
            representation=cfg.representation,
            dim=cfg.dim,
            token_dim=cfg.token_dim,
            stem_channels=cfg.stem_channels,
            width=cfg.encoder_width,
            depth=cfg.encoder_depth,
            heads=cfg.encoder_heads,
        )
        self.predictor = Predictor(
            dim=cfg.latent_dim,
            action_dim=cfg.action_dim,
            width=cfg.predictor_width,
            depth=cfg.predictor_depth,
            heads=cfg.predictor_heads,
            history=cfg.history,
        )

    def _check_device(self, name: str, x: Tensor) -> None:
        device = self.predictor.time.device
        if x.device != device:
            raise ValueError(
                f"{name} is on {x.device} but the world model is on {device}; "
                "move the inputs or the model with .to(...)"
            )

    def encode(self, frames: Tensor) -> Tensor:
        """frames uint8 [B, T, H, W, 3] -> z [B, T, D]"""
        self._check_device("frames", frames)
        return self.encoder(frames)

    def predict(self, z_hist: Tensor, actions: Tensor) -> Tensor:
        """Predict the latent after the last history frame.

        Args:
            z_hist: [B, K, D], the last K latents, oldest first
            actions: [B, K, A]; actions[:, k] was applied after z_hist[:, k], so actions[:, -1]
                is the action applied after the last frame and actions[:, :-1] are the ones
                taken between the history frames
        Returns:
            z_next [B, D]
        """
        self._check_device("z_hist", z_hist)
        self._check_device("actions", actions)
        return self.predictor(z_hist, actions)[:, -1]

    def rollout(self, z_hist: Tensor, actions: Tensor, past_actions: Tensor | None = None) -> Tensor:
        """Autoregressive prediction of H future latents, feeding predictions back in.

        Args:
            z_hist: [B, K, D], the last K latents, oldest first
            actions: [B, H, A]; actions[:, 0] is applied after the last history frame
            past_actions: [B, K-1, A], the actions taken between the history frames
                (past_actions[:, k] led from z_hist[:, k] to z_hist[:, k+1]); None means zeros
        Returns:
            z [B, H, D]; z[:, h] is the latent after actions[:, h]
        """
        self._check_device("z_hist", z_hist)
        self._check_device("actions", actions)
        b, k, _ = z_hist.shape
        if actions.ndim != 3 or actions.shape[0] != b or actions.shape[1] < 1:
            raise ValueError(f"actions must be [B, H, A] with B={b} and H >= 1, got {tuple(actions.shape)}")
        if past_actions is None:
            past_actions = actions.new_zeros(b, k - 1, actions.shape[2])
        self._check_device("past_actions", past_actions)
        if past_actions.shape != (b, k - 1, actions.shape[2]):
            raise ValueError(
                f"past_actions must be [B, K-1, A] = {(b, k - 1, actions.shape[2])}, got {tuple(past_actions.shape)}"
            )
        sequence = torch.cat([past_actions, actions], dim=1)  # [B, K-1+H, A]
        return self.predictor.rollout(z_hist, sequence, actions.shape[1])  # [B, H, D]

    def energy(self, z_a: Tensor, z_b: Tensor, metric: str | None = None) -> Tensor:
        """Distance between representations, averaged over D so typical values are O(1)
        when each dimension has unit spread.

        Args:
            z_a: [B, ..., D]
            z_b: [B, ..., D], broadcastable to z_a
            metric: "l2" (mean squared difference) or "l1" (mean absolute); None uses cfg.metric
        Returns:
            [B, ...]
        """
        metric = metric or self.cfg.metric
        if metric not in METRICS:
            raise ValueError(f"metric {metric!r} is unknown; use one of {METRICS}")
        diff = z_a - z_b
        return diff.square().mean(-1) if metric == "l2" else diff.abs().mean(-1)
