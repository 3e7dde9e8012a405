"""A time-conditioned MLP for vector data: the reference network of the 2-D and N-D path models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probpath.core.validation import check_positive_int
from probpath.nn.embeddings import time_embedding as make_time_embedding
from probpath.nn.mlp import MLP

__all__ = ["TimeMLP"]


class TimeMLP(nn.Module):
    """``(x_t, t, cond) -> output`` for vectors: an MLP on ``[x_t, emb(t), emb(cond)]``.

    The time features are sinusoidal or Gaussian-Fourier (:mod:`probpath.nn.embeddings`);
    with ``num_classes > 0`` a learned class embedding is concatenated too, and the extra
    index ``num_classes`` stands for "no label" (used when ``cond`` is ``None``, which is what
    classifier-free guidance needs).

    Args:
        dim: data dimension ``D`` (input and output features).
        hidden: widths of the hidden layers.
        time_embedding: ``"sinusoidal"`` or ``"fourier"``.
        embed_dim: size of the time (and class) features.
        num_classes: number of labels (0: unconditional).
        act: activation name (see :func:`probpath.nn.mlp.activation`).

    Shapes: ``x (batch, D)``, ``t (batch,)``, ``cond (batch,)`` long or ``None`` ->
    ``(batch, D)``.

    >>> net = TimeMLP(2, hidden=(16,))
    >>> net(torch.zeros(4, 2), torch.rand(4)).shape
    torch.Size([4, 2])
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        time_embedding: str = "sinusoidal",
        embed_dim: int = 32,
        num_classes: int = 0,
        act: str = "silu",
    ):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.num_classes = int(num_classes)
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.time_embed = make_time_embedding(time_embedding, embed_dim)
        in_dim = dim + embed_dim
        if self.num_classes:
            self.class_embed = nn.Embedding(self.num_classes + 1, embed_dim)
            in_dim += embed_dim
        self.net = MLP(in_dim, dim, tuple(hidden), act=act)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        feats = [x, self.time_embed(t).to(x.dtype)]
        if self.num_classes:
            if cond is None:
                cond = torch.full((x.shape[0],), self.num_classes, device=x.device)
            feats.append(self.class_embed(cond.long()).to(x.dtype))
        return self.net(torch.cat(feats, dim=-1))
