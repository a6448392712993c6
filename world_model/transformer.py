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
        q, k, v = self.project(x)
        return self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """tokens [B, N, W] -> queries, keys, values, each [B, heads, N, W/heads]."""
        b, n, w = x.shape
        # [B, N, 3W] -> [3, B, heads, N, W/heads] so each head attends on its own slice
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def merge(self, y: Tensor) -> Tensor:
        """attention output [B, heads, N, W/heads] -> tokens [B, N, W], through the output layer."""
        b, _, n, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, n, -1))  # [B, heads, N, W/h] -> [B, N, W]


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

    def modulated_prefix(self, prefix: Tensor, x: Tensor, prefix_modulation: Tensor, modulation: Tensor,
                         repeats: int) -> tuple[Tensor, Tensor]:
        """`modulated` with a causal mask over the window prefix ++ x of every row, where one
        prefix is shared by `repeats` consecutive rows of x: its tokens attend only to
        themselves, so their work is done once per prefix instead of once per row (a planner's
        candidates share the history of their episode).

        Args:
            prefix: [B, S, W], S >= 0, with prefix_modulation [B, S, 6W]
            x: [B*repeats, C, W], with modulation [B*repeats, C, 6W]; rows b*repeats ... (b+1)*repeats-1
                follow prefix[b]
            repeats: rows of x per prefix
        Returns:
            (prefix [B, S, W], x [B*repeats, C, W]), each as `modulated` gives it on the whole window
        """
        s, c = prefix.shape[1], x.shape[1]
        if s == 0:
            return prefix, self.modulated(x, modulation, causal_mask(c, x.device))
        p_shift1, p_scale1, p_gate1, p_shift2, p_scale2, p_gate2 = prefix_modulation.chunk(6, dim=-1)
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation.chunk(6, dim=-1)
        pq, pk, pv = self.attn.project(self.norm1(prefix) * (1 + p_scale1) + p_shift1)  # [B, heads, S, W/h] each
        q, k, v = self.attn.project(self.norm1(x) * (1 + scale1) + shift1)  # [B*repeats, heads, C, W/h] each
        # every row attends to its prefix's keys and values, then causally to its own
        k = torch.cat([pk.repeat_interleave(repeats, dim=0), k], dim=2)  # [B*repeats, heads, S+C, W/h]
        v = torch.cat([pv.repeat_interleave(repeats, dim=0), v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(s + c, x.device)[s:])  # mask [C, S+C]
        prefix = prefix + p_gate1 * self.attn.merge(F.scaled_dot_product_attention(
            pq, pk, pv, attn_mask=causal_mask(s, x.device)))
        x = x + gate1 * self.attn.merge(y)
        prefix = prefix + p_gate2 * self.mlp(self.norm2(prefix) * (1 + p_scale2) + p_shift2)
        return prefix, x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


def causal_mask(steps: int, device: torch.device) -> Tensor:
    """bool [T, T], True where token t may attend to token s, i.e. s <= t."""
    return torch.ones(steps, steps, dtype=torch.bool, device=device).tril()
