"""One env's view of a shared world model: the interface of a single-env WorldModel, in that env's
own actions (world_model/model.py: WorldModel.for_env makes it)."""

from __future__ import annotations

import dataclasses

import numpy as np
from torch import Tensor, nn

from world_model.action_code import encode_actions


class EnvView(nn.Module):
    """What planning (agent/policies.py) and the fitted modules (critic, landmark graph, level-2
    predictor, decoder) call on a world model, for one env of a shared one: encode, predict,
    rollout, rollout_candidates and energy, with the env's own actions [..., A_env], which it pads
    and codes (world_model/action_code.py) before the shared model sees them. `cfg` is the shared
    model's with action_dim = A_env and no env list, so it reads as a single-env model's.

    Its one submodule is the shared model and it has no parameters of its own: .to(), .eval() and
    .parameters() act on the shared model.
    """

    def __init__(self, model: nn.Module, env: int):
        super().__init__()
        self.model, self.env = model, env
        self.env_name = model.cfg.envs[env]
        self.action_dims = list(model.cfg.env_action_dims)
        self.cfg = dataclasses.replace(model.cfg, action_dim=self.action_dims[env], envs=None, env_action_dims=None)

    def for_env(self, name: str) -> nn.Module:
        """The shared model's view for env `name` (this view when it is this env)."""
        return self if name == self.env_name else self.model.for_env(name)

    def _coded(self, name: str, actions: Tensor | np.ndarray) -> Tensor:
        """[..., A_env] (tensor on the model's device, or numpy) -> [..., A_max + E] on the model's device."""
        actions = self.model._input(name, actions, cast=True)
        if actions.shape[-1:] != (self.cfg.action_dim,):
            raise ValueError(f"{name} must end in env {self.env_name}'s own action size {self.cfg.action_dim}, "
                             f"got {tuple(actions.shape)}")
        return encode_actions(actions, self.env, self.action_dims)

    def _past(self, z_hist, actions: Tensor, past_actions) -> Tensor:
        """The coded past actions [B, K-1, A_max + E]; None: zero actions of this env (coded, as every
        action the shared model was trained on)."""
        if past_actions is None:
            k = z_hist.shape[1] if z_hist.ndim == 3 else 1  # a z_hist of another shape: the model says what it wants
            past_actions = actions.new_zeros(actions.shape[0], k - 1, self.cfg.action_dim)
        return self._coded("past_actions", past_actions)

    def encode(self, frames: Tensor | np.ndarray) -> Tensor:
        """frames uint8 [B, T, H, W, 3] -> z [B, T, D] (the shared encoder; no action involved)."""
        return self.model.encode(frames)

    def predict(self, z_hist: Tensor | np.ndarray, actions: Tensor | np.ndarray) -> Tensor:
        """z_hist [B, K, D], actions [B, K, A_env] -> z_next [B, D] (WorldModel.predict)."""
        return self.model.predict(z_hist, self._coded("actions", actions))

    def rollout(self, z_hist: Tensor | np.ndarray, actions: Tensor | np.ndarray,
                past_actions: Tensor | np.ndarray | None = None) -> Tensor:
        """z_hist [B, K, D], actions [B, H, A_env], past_actions [B, K-1, A_env] or None (zeros)
        -> z [B, H, D] (WorldModel.rollout)."""
        coded = self._coded("actions", actions)
        return self.model.rollout(z_hist, coded, past_actions=self._past(z_hist, coded, past_actions))

    def rollout_candidates(self, z_hist: Tensor, actions: Tensor, past_actions: Tensor | None = None) -> Tensor:
        """z_hist [B, K, D], actions [B, N, H, A_env], past_actions [B, K-1, A_env] or None (zeros)
        -> z [B, N, H, D] (WorldModel.rollout_candidates)."""
        coded = self._coded("actions", actions)
        return self.model.rollout_candidates(z_hist, coded, past_actions=self._past(z_hist, coded, past_actions))

    def energy(self, z_a: Tensor, z_b: Tensor, metric: str | None = None) -> Tensor:
        """z_a [B, ..., D], z_b broadcastable -> [B, ...] (WorldModel.energy)."""
        return self.model.energy(z_a, z_b, metric)
