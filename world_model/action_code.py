"""The actions of a shared world model (one trained on several envs' video): each env's own action
padded with zeros to the widest env's, then a one-hot code of the env appended.

The predictor's action MLP (world_model/predictor.py) then receives [A_max + E] numbers, and its
first linear layer maps them to W_a @ a_padded + W_e[:, env] + b: the columns it applies to the
one-hot code are a learned env embedding added to the embedding of every action. The predictor
and the planners stay as they are; a planner sees only the env's own A numbers
(world_model/env_view.py pads them on the way in). The loss's inverse-dynamics head
(world_model/losses.py) predicts the whole coded action, padding and code included: no mask yet.
"""

from __future__ import annotations

from torch import Tensor


def shared_action_dim(action_dims: list[int]) -> int:
    """The action size of a shared model over envs with these own action sizes: A_max + E."""
    return max(action_dims) + len(action_dims)


def code_column(env: int, action_dims: list[int]) -> int:
    """The column of env `env`'s one-hot code in a shared model's action, A_max + env."""
    return max(action_dims) + env


def encode_actions(actions: Tensor, env: int, action_dims: list[int]) -> Tensor:
    """One env's actions in the shared model's action space.

    Args:
        actions: [..., A_env], A_env = action_dims[env]
        env: the env's index in the shared model's env list
        action_dims: every env's own action size, in the order of the env list
    Returns:
        [..., A_max + E]: the actions, zeros up to A_max, then the one-hot code of `env`
    """
    own = action_dims[env]
    if actions.shape[-1] != own:
        raise ValueError(f"actions must be [..., {own}] (env {env}'s own action size), got {tuple(actions.shape)}")
    out = actions.new_zeros(*actions.shape[:-1], shared_action_dim(action_dims))
    out[..., :own] = actions
    out[..., code_column(env, action_dims)] = 1
    return out

