"""Time (noise-level) features for the reference networks: sinusoidal and random Fourier.

A path network is called as ``network(x_t, t, cond)`` with ``t`` of shape ``(batch,)``; these
modules turn ``t`` into a ``(batch, dim)`` feature vector.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from probpath.core.validation import check_choice, check_positive_int

__all__ = ["SinusoidalEmbedding", "FourierFeatures", "time_embedding", "TIME_EMBEDDINGS"]


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal features of a scalar (DDPM's timestep embedding).

    ``emb(t) = [cos(s t w_k), sin(s t w_k)]_k`` with ``w_k = max_period^(-k / half)``, so the
    frequencies are geometric between 1 and ``1 / max_period``; ``scale`` maps ``t ∈ [0, 1]``
    to the integer-timestep range the frequencies were designed for (1000, as in DDPM).

    Args:
        dim: output features (even).
        scale: multiplier applied to ``t`` first.
        max_period: the longest period.

    Shapes: ``(batch,) -> (batch, dim)``.

    >>> SinusoidalEmbedding(8)(torch.rand(3)).shape
    torch.Size([3, 8])
    """

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0):
        super().__init__()
        dim = check_positive_int(dim, "dim")
        if dim % 2:
            raise ValueError(f"dim must be even for sinusoidal features, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.dim = dim
        self.scale = float(scale)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = (self.scale * t.to(self.freqs.dtype))[:, None] * self.freqs
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)


class FourierFeatures(nn.Module):
    """Gaussian random Fourier features ``[cos(2π t w), sin(2π t w)]``, ``w ~ N(0, scale²)``.

    Used by score SDEs (Song et al., 2021) for continuous time or log-noise inputs. The
    frequencies are a fixed, saved buffer (drawn from a seeded generator, so two models built
    with the same ``seed`` agree).

    Args:
        dim: output features (even).
        scale: standard deviation of the frequencies.
        seed: seed of the frequencies.

    Shapes: ``(batch,) -> (batch, dim)``.

    >>> FourierFeatures(8)(torch.rand(3)).shape
    torch.Size([3, 8])
    """

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        dim = check_positive_int(dim, "dim")
        if dim % 2:
            raise ValueError(f"dim must be even for Fourier features, got {dim}")
        g = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.register_buffer("freqs", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * t.to(self.freqs.dtype)[:, None] * self.freqs
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)


TIME_EMBEDDINGS = ("sinusoidal", "fourier")


def time_embedding(kind: str, dim: int, scale: float = 1000.0) -> nn.Module:
    """A time-feature module by name: ``"sinusoidal"`` (``t`` multiplied by ``scale`` first)
    or ``"fourier"`` (``scale`` unused)."""
    check_choice(kind, "time_embedding", TIME_EMBEDDINGS)
    return SinusoidalEmbedding(dim, scale=scale) if kind == "sinusoidal" else FourierFeatures(dim)
