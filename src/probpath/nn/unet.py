"""A small UNet for 8×8 to 32×32 images (DDPM-style residual blocks, optional class input)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probpath.core.validation import check_event_shape, check_positive_int
from probpath.nn.embeddings import time_embedding as make_time_embedding

__all__ = ["UNet"]


def _norm(channels: int) -> nn.GroupNorm:
    # at least two channels per group: a group of one channel would normalise away the
    # per-channel shift by which the time and label embeddings enter each block
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0 and (channels // g >= 2 or g == 1))
    return nn.GroupNorm(groups, channels)


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time/class embedding added in between (Ho et al., 2020)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.drop = nn.Dropout(dropout)
        self.act = nn.SiLU()
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(self.act(self.norm2(h))))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over pixels, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        a = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        return x + self.out(a.transpose(1, 2).reshape(b, c, h, w))


class UNet(nn.Module):
    """``(x_t, t, cond) -> output`` for images ``(batch, C, H, W)``, H and W from 8 to 32.

    Resolution is halved after every level but the last (``len(channel_mult)`` levels), so
    ``H`` and ``W`` must be divisible by ``2 ** (len(channel_mult) - 1)``.

    Args:
        event_shape: ``(C, H, W)``.
        base_channels: channels of the first level.
        channel_mult: channel multiplier per level, e.g. ``(1, 2)`` for 8×8, ``(1, 2, 2)``
            for 32×32.
        num_res_blocks: residual blocks per level (the decoder uses one more).
        attention: add self-attention in the bottleneck.
        dropout: dropout inside the residual blocks.
        num_classes: number of labels (0: unconditional; index ``num_classes`` = no label).
        time_embedding: ``"sinusoidal"`` or ``"fourier"``.

    Shapes: ``x (batch, C, H, W)``, ``t (batch,)``, ``cond (batch,)`` or ``None`` ->
    ``(batch, C, H, W)``.

    >>> net = UNet((1, 8, 8), base_channels=8)
    >>> net(torch.zeros(2, 1, 8, 8), torch.rand(2)).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        base_channels: int = 32,
        channel_mult: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        attention: bool = False,
        dropout: float = 0.0,
        num_classes: int = 0,
        time_embedding: str = "sinusoidal",
    ):
        super().__init__()
        shape = check_event_shape(event_shape)
        if len(shape) != 3:
            raise ValueError(f"event_shape must be (C, H, W), got {shape}")
        c, h, w = shape
        factor = 2 ** (len(channel_mult) - 1)
        if h % factor or w % factor:
            raise ValueError(
                f"image size {h}x{w} is not divisible by {factor}; use fewer levels in "
                "channel_mult or pad the images"
            )
        base = check_positive_int(base_channels, "base_channels")
        n_res = check_positive_int(num_res_blocks, "num_res_blocks")
        emb_dim = 4 * base
        self.num_classes = int(num_classes)
        self.time_embed = nn.Sequential(
            make_time_embedding(time_embedding, base),
            nn.Linear(base, emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )
        if self.num_classes:
            self.class_embed = nn.Embedding(self.num_classes + 1, emb_dim)
        self.conv_in = nn.Conv2d(c, base, 3, padding=1)

        self.down = nn.ModuleList()
        skips, ch = [base], base
        for level, mult in enumerate(channel_mult):
            for _ in range(n_res):
                self.down.append(_ResBlock(ch, base * mult, emb_dim, dropout))
                ch = base * mult
                skips.append(ch)
            if level < len(channel_mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid1 = _ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = _Attention(ch) if attention else nn.Identity()
        self.mid2 = _ResBlock(ch, ch, emb_dim, dropout)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(n_res + 1):
                self.up.append(_ResBlock(ch + skips.pop(), base * mult, emb_dim, dropout))
                ch = base * mult
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                self.up.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, c, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        emb = self.time_embed(t).to(x.dtype)
        if self.num_classes:
            if cond is None:
                cond = torch.full((x.shape[0],), self.num_classes, device=x.device)
            emb = emb + self.class_embed(cond.long()).to(x.dtype)
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, _ResBlock) else layer(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, _ResBlock):
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))
