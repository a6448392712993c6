"""Transformer pieces shared by the encoder (plain pre-norm blocks) and the predictor
(blocks conditioned by AdaLN-zero)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens [B, N, W]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads != 0:
            raise ValueError(
                f"attention width {width} is not divisible by heads {heads}; choose heads that divide width"
            )
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Args:
            x: tokens [B, N, W]
            mask: bool [N, N], True where query i may attend to key j; None attends everywhere
        Returns:
            [B, N, W]
        """
        b, n, w = x.shape
        # [B, N, 3W] -> [3, B, heads, N, W/heads] so each head attends on its own slice
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        # [B, heads, N, W/heads] -> [B, N, W]
        return self.out(y.transpose(1, 2).reshape(b, n, w))


class MLP(nn.Module):
    """Two-layer GELU MLP applied per token: [..., W] -> [..., W]."""

    def __init__(self, width: int, ratio: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, ratio * width), nn.GELU(), nn.Linear(ratio * width, width))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)). Tokens [B, N, W]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x [B, N, W], mask bool [N, N] or None -> [B, N, W]"""
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class AdaLNBlock(nn.Module):
    """Pre-norm block whose norms are modulated per token by a condition (AdaLN-zero).

    The condition gives shift, scale and gate for both sub-layers. The modulation layer starts
    at zero, so every gate is zero and the block starts as the identity: training grows the
    conditioning from a stable start instead of from random perturbations of the residual stream.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        # no learned affine: the condition supplies scale and shift
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = MLP(width)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: Tensor, cond: Tensor, mask: Tensor | None = None) -> Tensor:
        """Args:
            x: tokens [B, N, W]
            cond: condition per token [B, N, W]
            mask: bool [N, N] or None
        Returns:
            [B, N, W]
        """
        return self.modulated(x, self.modulation(cond), mask)

    def modulated(self, x: Tensor, modulation: Tensor, mask: Tensor | None = None) -> Tensor:
        """forward with the modulation already computed: x [B, N, W], modulation [B, N, 6W]
        (self.modulation(cond)) -> [B, N, W]. Lets a rollout compute each action's modulation
        once instead of once per window it appears in."""
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation.chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, mask)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


def causal_mask(steps: int, device: torch.device) -> Tensor:
    """bool [T, T], True where token t may attend to token s, i.e. s <= t."""
    return torch.ones(steps, steps, dtype=torch.bool, device=device).tril()
