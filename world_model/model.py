"""The JEPA world model: encoder + action-conditioned predictor, and its configuration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from world_model.action_code import shared_action_dim
from world_model.encoder import GRID, REPRESENTATIONS, Encoder, stem_strides
from world_model.env_view import EnvView
from world_model.predictor import Predictor

METRICS = ("l2", "l1")
SHARED_FIELDS = ("envs", "env_action_dims")  # WorldModelConfig's fields of a shared model only


def single_env_record(values: dict) -> dict:
    """A WorldModelConfig's values (a dict) without the shared-model fields where they are unset: a
    single-env model's records (the run identity that names its run folder, the checkpoint manifest)
    read as they did before shared models existed."""
    return {k: v for k, v in values.items() if not (k in SHARED_FIELDS and v is None)}


@dataclass
class WorldModelConfig:
    """Every hyperparameter of WorldModel; WorldModel(cfg) builds from it and checkpoints store it.
    The defaults are the shipped architecture (configs/world_model/tokens.yaml adds nothing to them)."""

    image_size: int | None = None
    """Square frame side in pixels: 32, 64, 96 or 128 (training takes the dataset's when unset)."""
    action_dim: int | None = None
    """A, the size of one action vector (training takes the dataset's when unset)."""
    representation: str = "tokens"
    """"tokens": conv stem -> transformer over the 8x8 tokens -> each token projected to token_dim,
    flattened (D = 64 * token_dim); "pooled": the same trunk, then one attention-pooled vector of size dim."""
    dim: int = 128
    """D of the pooled representation (ignored by "tokens")."""
    token_dim: int = 12
    """Per-cell size for "tokens", so D = 64 * token_dim (12: D = 768). The width that reads best with
    a linear probe and plans best at the default schedule (docs/NOTEBOOK.md, "Twelve numbers per
    token, and a held peak: the default now"); ignored by "pooled"."""
    stem_channels: int = 16
    """Channels of the first conv stage, doubling per stage up to encoder_width."""
    encoder_width: int = 64
    """Transformer width over the 8x8 tokens."""
    encoder_depth: int = 2
    """Transformer blocks in the encoder."""
    encoder_heads: int = 4
    """Attention heads in the encoder."""
    predictor_width: int = 128
    """Predictor transformer width."""
    predictor_depth: int = 2
    """Predictor blocks."""
    predictor_heads: int = 4
    """Predictor attention heads."""
    history: int = 2
    """K, the latents the predictor sees to predict the next one."""
    metric: str = "l2"
    """Default energy: "l2" (mean squared difference) or "l1" (mean absolute)."""
    envs: list[str] | None = None
    """A shared model's envs, in the order of their one-hot codes (world_model/action_code.py);
    None: a single-env model. Training fills it from its datasets."""
    env_action_dims: list[int] | None = None
    """A shared model's per-env own action sizes, in the order of `envs`; action_dim is then
    max(env_action_dims) + len(envs). None: a single-env model."""

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
        self._check_envs()
        for width, heads in (("encoder_width", "encoder_heads"), ("predictor_width", "predictor_heads")):
            if getattr(self, width) % getattr(self, heads) != 0:
                raise ValueError(
                    f"{width}={getattr(self, width)} is not divisible by {heads}={getattr(self, heads)}; change one"
                )

    def _check_envs(self) -> None:
        """A shared model's env list and action sizes agree with each other and with action_dim."""
        if (self.envs is None) != (self.env_action_dims is None):
            raise ValueError(f"envs={self.envs} and env_action_dims={self.env_action_dims}: set both (a shared "
                             "model) or neither (a single-env model)")
        if self.envs is None:
            return
        if not self.envs or len(self.envs) != len(self.env_action_dims) or len(set(self.envs)) != len(self.envs):
            raise ValueError(f"envs={self.envs} and env_action_dims={self.env_action_dims}: name each env once, "
                             "with one action size per env")
        if min(self.env_action_dims) < 1:
            raise ValueError(f"env_action_dims={self.env_action_dims}: every action size must be at least 1")
        wanted = shared_action_dim(list(self.env_action_dims))
        if self.action_dim is not None and self.action_dim != wanted:
            raise ValueError(f"action_dim={self.action_dim} but a shared model over env_action_dims="
                             f"{self.env_action_dims} takes {wanted} (the widest action + one code per env)")

    @property
    def latent_dim(self) -> int:
        """D, the size of the flat per-frame representation."""
        return self.dim if self.representation == "pooled" else GRID * GRID * self.token_dim


class WorldModel(nn.Module):
    """Encoder + predictor with the public API used by training and planning.

    Action convention everywhere: the action at index t is applied after frame t and leads to frame t+1.
    The model lives on whatever device the user moves it to; tensor inputs must be on that device
    (moving them silently would hide a copy per call), while numpy arrays, which is what
    environments return, are copied there. Float inputs of another dtype (float64 actions) are cast
    to the model's dtype.
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

    def _input(self, name: str, x: Tensor | np.ndarray, cast: bool) -> Tensor:
        """`x` as a tensor on the model's device: numpy arrays are copied there, tensors must be
        there already. cast=True gives floats the model's dtype (numpy and Python arithmetic
        make float64, which the layers refuse with an unhelpful dtype error). A batch of zero
        clips is refused: it ends in reshape errors deep in the layers."""
        if isinstance(x, np.ndarray):
            if x.dtype.kind not in "biuf":
                raise ValueError(f"{name} must hold numbers, got a numpy array of {x.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(x)).to(self.predictor.time.device)  # a strided view too
        elif isinstance(x, Tensor):
            self._check_device(name, x)
        else:
            raise TypeError(f"{name} must be a torch.Tensor or a numpy array, got {type(x).__name__}")
        if cast and x.dtype != self.predictor.time.dtype and not x.dtype.is_complex:
            x = x.to(self.predictor.time.dtype)
        if x.ndim >= 1 and x.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch (B = 0, shape {tuple(x.shape)}); pass at least one clip")
        return x

    @staticmethod
    def _check_finite(**named: Tensor) -> None:
        """NaN or infinite actions would give NaN latents silently (and NaN plan costs after them).
        All the named tensors are checked at once: on a GPU the check waits for them to be
        computed, and one wait per call costs less than one per argument."""
        if torch.stack([torch.isfinite(x).all() for x in named.values()]).all():  # one wait
            return
        for name, x in named.items():
            bad = (~torch.isfinite(x)).nonzero()
            if len(bad):
                raise ValueError(
                    f"{name} hold NaN or infinite values (first at {[int(i) for i in bad[0]]}); "
                    "pass finite actions within the env's bounds"
                )

    def _check_latents(self, z_hist: Tensor) -> tuple[int, int]:
        """z_hist [B, K, D] with 1 <= K <= history -> (B, K)."""
        d, history = self.cfg.latent_dim, self.cfg.history
        if z_hist.ndim != 3 or z_hist.shape[2] != d or not 1 <= z_hist.shape[1] <= history:
            raise ValueError(
                f"z_hist must be [B, K, D] with D={d} and 1 <= K <= history={history}, got {tuple(z_hist.shape)}; "
                "pass the last latents of encode(frames) [B, T, D] (one latent per clip is z[:, None])"
            )
        return z_hist.shape[0], z_hist.shape[1]

    def encode(self, frames: Tensor | np.ndarray) -> Tensor:
        """frames uint8 [B, T, H, W, 3] (tensor or numpy) -> z [B, T, D]"""
        frames = self._input("frames", frames, cast=False)
        if frames.ndim == 5 and frames.shape[1] == 0:
            raise ValueError(f"frames holds no frame (T = 0, shape {tuple(frames.shape)}); pass at least one")
        return self.encoder(frames)

    def predict(self, z_hist: Tensor | np.ndarray, actions: Tensor | np.ndarray) -> Tensor:
        """Predict the latent after the last history frame.

        Args:
            z_hist: [B, K, D], the last K latents, oldest first
            actions: [B, K, A]; actions[:, k] was applied after z_hist[:, k], so actions[:, -1]
                is the action applied after the last frame and actions[:, :-1] are the ones
                taken between the history frames
        Returns:
            z_next [B, D]
        """
        z_hist = self._input("z_hist", z_hist, cast=True)
        actions = self._input("actions", actions, cast=True)
        b, k = self._check_latents(z_hist)
        if actions.shape != (b, k, self.cfg.action_dim):
            raise ValueError(
                f"actions must be [B, K, A] = {(b, k, self.cfg.action_dim)} to match z_hist, got {tuple(actions.shape)}"
            )
        self._check_finite(actions=actions)
        return self.predictor(z_hist, actions)[:, -1]

    def rollout(
        self, z_hist: Tensor | np.ndarray, actions: Tensor | np.ndarray, past_actions: Tensor | np.ndarray | None = None
    ) -> Tensor:
        """Autoregressive prediction of H future latents, feeding predictions back in.

        Args:
            z_hist: [B, K, D], the last K latents, oldest first
            actions: [B, H, A]; actions[:, 0] is applied after the last history frame
            past_actions: [B, K-1, A], the actions taken between the history frames
                (past_actions[:, k] led from z_hist[:, k] to z_hist[:, k+1]); None means zeros
        Returns:
            z [B, H, D]; z[:, h] is the latent after actions[:, h]
        """
        z_hist = self._input("z_hist", z_hist, cast=True)
        actions = self._input("actions", actions, cast=True)
        b, k = self._check_latents(z_hist)
        a = self.cfg.action_dim
        if actions.ndim != 3 or actions.shape[0] != b or actions.shape[1] < 1 or actions.shape[2] != a:
            raise ValueError(f"actions must be [B, H, A] with B={b}, H >= 1 and A={a}, got {tuple(actions.shape)}")
        if past_actions is None:
            past_actions = actions.new_zeros(b, k - 1, a)
            self._check_finite(actions=actions)
        else:
            past_actions = self._input("past_actions", past_actions, cast=True)
            if past_actions.shape != (b, k - 1, a):
                raise ValueError(
                    f"past_actions must be [B, K-1, A] = {(b, k - 1, a)}, got {tuple(past_actions.shape)}"
                )
            self._check_finite(actions=actions, past_actions=past_actions)
        sequence = torch.cat([past_actions, actions], dim=1)  # [B, K-1+H, A]
        return self.predictor.rollout(z_hist, sequence, actions.shape[1])  # [B, H, D]

    def rollout_candidates(self, z_hist: Tensor, actions: Tensor, past_actions: Tensor | None = None) -> Tensor:
        """`rollout` of N candidate action sequences from each of B histories (a planner's
        population), computing what the candidates of one history share once for it: the same
        numbers as rollout on the history repeated N times, with less work and no N copies of it.

        Args:
            z_hist: [B, K, D], the last K latents, oldest first
            actions: [B, N, H, A]; actions[:, n, 0] is applied after the last history frame
            past_actions: [B, K-1, A], the actions taken between the history frames; None means zeros
        Returns:
            z [B, N, H, D]; z[:, n, h] is the latent after actions[:, n, h]
        """
        z_hist = self._input("z_hist", z_hist, cast=True)
        actions = self._input("actions", actions, cast=True)
        b, k = self._check_latents(z_hist)
        a = self.cfg.action_dim
        if actions.ndim != 4 or actions.shape[0] != b or min(actions.shape[1:3]) < 1 or actions.shape[3] != a:
            raise ValueError(f"actions must be [B, N, H, A] with B={b}, N >= 1, H >= 1 and A={a}, "
                             f"got {tuple(actions.shape)}")
        if past_actions is None:
            past_actions = actions.new_zeros(b, k - 1, a)
        past_actions = self._input("past_actions", past_actions, cast=True)
        if past_actions.shape != (b, k - 1, a):
            raise ValueError(f"past_actions must be [B, K-1, A] = {(b, k - 1, a)}, got {tuple(past_actions.shape)}")
        self._check_finite(actions=actions, past_actions=past_actions)
        return self.predictor.rollout_candidates(z_hist, past_actions, actions)  # [B, N, H, D]

    def for_env(self, name: str) -> WorldModel | EnvView:
        """What planning and the fitted modules use for env `name`: a shared model's view for that
        env (world_model/env_view.py: its cfg has the env's own action_dim and it pads and codes the
        actions itself); a single-env model as it is (which env's video it was trained on is
        in its checkpoint's manifest, checked by agent.run). An env a shared model was not trained
        on is refused in one line."""
        if self.cfg.envs is None:
            return self
        if name not in self.cfg.envs:
            raise ValueError(f"this shared world model was trained on envs {', '.join(self.cfg.envs)}, not {name}; "
                             f"pass one of them, or train a model on {name}'s video too")
        return EnvView(self, self.cfg.envs.index(name))

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
