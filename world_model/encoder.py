"""Pixel encoder: uint8 frames -> one flat representation vector per frame."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from world_model.transformer import Block

GRID = 8  # the stem always ends on an 8x8 feature map: 64 tokens for the transformer
REPRESENTATIONS = ("pooled", "tokens")


def stem_strides(image_size: int) -> list[int]:
    """Strides of the downsampling stages that take `image_size` pixels to an 8x8 map.

    Powers of two times 8 use stride-2 stages only (64 -> 3 stages); sizes with a factor 3
    (96) start with one stride-3 stage so no stage has to pool unevenly.
    """
    if image_size % GRID != 0 or image_size < 2 * GRID:
        raise ValueError(f"image_size {image_size} is not supported; use 32, 64, 96 or 128 (8 * 2^k or 8 * 3 * 2^k)")
    factor, strides = image_size // GRID, []
    if factor % 3 == 0:
        strides.append(3)
        factor //= 3
    while factor > 1 and factor % 2 == 0:
        strides.append(2)
        factor //= 2
    if factor != 1:
        raise ValueError(f"image_size {image_size} is not supported; use 32, 64, 96 or 128 (8 * 2^k or 8 * 3 * 2^k)")
    return strides


class _Stage(nn.Module):
    """Downsampling conv (kernel stride+2, so the map shrinks exactly by `stride`) then a
    residual 3x3 conv; GroupNorm + GELU after each."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        groups = 8 if c_out % 8 == 0 else 1
        self.down = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel_size=stride + 2, stride=stride, padding=1),
            nn.GroupNorm(groups, c_out),
            nn.GELU(),
        )
        self.refine = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C_in, H, W] -> [B, C_out, H / stride, W / stride]"""
        x = self.down(x)
        return x + self.refine(x)


class AttentionPool(nn.Module):
    """One learned query attends over the tokens: [B, N, W] -> [B, W]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [B, N, W] -> [B, W]"""
        kv = self.norm(tokens)
        pooled, _ = self.attn(self.query.expand(tokens.shape[0], -1, -1), kv, kv, need_weights=False)
        return pooled[:, 0]


class Encoder(nn.Module):
    """Conv stem to an 8x8 map, a small transformer over its 64 tokens, then one flat vector per frame.

    representation="pooled": attention pooling then a linear map -> D = dim.
    representation="tokens": each token projected to token_dim and flattened -> D = 64 * token_dim;
    keeps where things are, which a pooled vector must re-encode.
    """

    def __init__(
        self,
        image_size: int = 64,
        representation: str = "pooled",
        dim: int = 128,
        token_dim: int = 8,
        stem_channels: int = 32,
        width: int = 128,
        depth: int = 2,
        heads: int = 4,
    ):
        super().__init__()
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation {representation!r} is unknown; use one of {REPRESENTATIONS}")
        self.image_size = image_size
        self.representation = representation
        strides = stem_strides(image_size)
        # channels double per stage from stem_channels and the last stage lands on the transformer width
        channels = [min(stem_channels * 2**i, width) for i in range(len(strides) - 1)] + [width]
        stages, c_in = [], 3
        for stride, c_out in zip(strides, channels):
            stages.append(_Stage(c_in, c_out, stride))
            c_in = c_out
        self.stem = nn.Sequential(*stages)
        self.position = nn.Parameter(torch.randn(1, GRID * GRID, width) * 0.02)  # learned 2D position, one per cell
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        if representation == "pooled":
            self.pool = AttentionPool(width, heads)
            self.head = nn.Linear(width, dim)
            self.out_dim = dim
        else:
            self.head = nn.Linear(width, token_dim)
            self.out_dim = GRID * GRID * token_dim

    def forward(self, frames: Tensor) -> Tensor:
        """Args:
            frames: uint8 [B, T, H, W, 3] with H = W = image_size
        Returns:
            z [B, T, D], D = out_dim
        """
        b, t = frames.shape[:2]
        tokens = self.tokens(frames)  # [B*T, 64, width]
        if self.representation == "pooled":
            z = self.head(self.pool(tokens))  # [B*T, dim]
        else:
            z = self.head(tokens).flatten(1)  # [B*T, 64 * token_dim]
        return z.view(b, t, -1)  # [B, T, D]

    def tokens(self, frames: Tensor) -> Tensor:
        """The transformer's normalised output tokens, before the head: frames uint8
        [B, T, H, W, 3] -> [B*T, 64, width]. For analysis (what the head keeps); plan with forward."""
        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(
                f"frames must be uint8 [B, T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}; "
                "pass raw rendered pixels, not normalised floats"
            )
        b, t, h, w, _ = frames.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(
                f"frames are {h}x{w} but the encoder was built for {self.image_size}x{self.image_size}; "
                f"resize them or rebuild with image_size={h}"
            )
        # fold time into batch: [B, T, H, W, 3] -> [B*T, 3, H, W]
        x = frames.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float() / 255.0 - 0.5
        x = self.stem(x)  # [B*T, width, 8, 8]
        tokens = x.flatten(2).transpose(1, 2) + self.position  # [B*T, 64, width]
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)
