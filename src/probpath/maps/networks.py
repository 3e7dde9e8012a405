"""Two-time networks for flow maps: ``(x, t, s) -> output`` (MeanFlow's ``u(x, r, t)``, the
shortcut model's ``s(x, t, d)``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probpath.core.validation import check_positive_int
from probpath.nn.embeddings import time_embedding as make_time_embedding
from probpath.nn.mlp import MLP

__all__ = ["TwoTimeMLP"]


class TwoTimeMLP(nn.Module):
    """An MLP on ``[x, emb(t), emb(s)]`` for vectors (two time embeddings of the same kind).

    Args:
        dim: data dimension ``D``.
        hidden: hidden widths.
        time_embedding: ``"sinusoidal"`` or ``"fourier"``.
        embed_dim: size of each time embedding.
        act: activation name.
        time_scale: multiplier of both times before a sinusoidal embedding (the default 1000
            is DDPM's timestep range). A network differentiated in time (MeanFlow's jvp)
            wants a small one: ``d emb / dt`` grows with it (see :class:`MeanFlow`).

    Shapes: ``x (batch, D)``, ``t, s (batch,)`` -> ``(batch, D)``.

    >>> TwoTimeMLP(2, hidden=(8,))(torch.zeros(3, 2), torch.rand(3), torch.rand(3)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        time_embedding: str = "sinusoidal",
        embed_dim: int = 32,
        act: str = "silu",
        time_scale: float = 1000.0,
    ):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale!r}")
        self.embed_t = make_time_embedding(time_embedding, embed_dim, time_scale)
        self.embed_s = make_time_embedding(time_embedding, embed_dim, time_scale)
        self.net = MLP(dim + 2 * embed_dim, dim, tuple(hidden), act=act)

    def forward(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        feats = [x, self.embed_t(t).to(x.dtype), self.embed_s(s).to(x.dtype)]
        return self.net(torch.cat(feats, dim=-1))
