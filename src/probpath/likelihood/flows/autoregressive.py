"""Masked autoregressive flow (Papamakarios et al., 2017; §3.1) on MADE conditioners.

Each layer maps data to base as ``z_i = x_i · exp(s_i(x_<i)) + t_i(x_<i)``: the density
direction takes one MADE pass (fast training by maximum likelihood); sampling inverts it
coordinate by coordinate, ``x_i = (z_i − t_i) · exp(−s_i)`` (``d`` passes per layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from probpath.core.model import Capabilities
from probpath.core.validation import check_positive_int
from probpath.likelihood.flows.base import FlowModel, Transform, check_num_classes

__all__ = ["MaskedLinear", "MADE", "MaskedAffineAutoregressive", "MAF"]


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out, in)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder (Germain et al., 2015): output ``k·d + i`` depends on ``x_{<i}`` only,
    in the variable order ``order`` (a permutation of ``0..d-1``).

    Shapes: ``(batch, d) -> (batch, n_out, d)``. A ``context`` ``(batch, context_dim)`` (the
    one-hot label) enters the first hidden layer unmasked: it may feed every output.
    """

    def __init__(
        self, order: torch.Tensor, hidden: Sequence[int], n_out: int = 2, context_dim: int = 0
    ):
        super().__init__()
        if context_dim and not hidden:
            raise ValueError("a context needs at least one hidden layer in MADE")
        self.context_net = nn.Linear(context_dim, hidden[0]) if context_dim else None
        d = order.numel()
        degrees = [order]  # input degrees 0..d-1 in the given order
        for h in hidden:  # hidden degrees cycle through 0..d-2 (every unit can be used)
            degrees.append(torch.arange(h) % max(d - 1, 1))
        layers: list[nn.Module] = []
        for din, dout in zip(degrees[:-1], degrees[1:]):
            layers.append(MaskedLinear((dout[:, None] >= din[None, :]).float()))
            layers.append(nn.ReLU())
        out_deg = order.repeat(n_out)
        layers.append(MaskedLinear((out_deg[:, None] > degrees[-1][None, :]).float()))
        self.net = nn.Sequential(*layers)
        self.n_out, self.d = n_out, d

    def forward(self, x: torch.Tensor, context=None) -> torch.Tensor:
        if context is None:
            return self.net(x).reshape(x.shape[0], self.n_out, self.d)
        h = self.net[0](x) + self.context_net(context)
        return self.net[1:](h).reshape(x.shape[0], self.n_out, self.d)


class MaskedAffineAutoregressive(Transform):
    """One MAF layer: ``z = x · exp(s(x_<)) + t(x_<)``, ``s`` softly clamped to ±``scale_bound``."""

    def __init__(
        self,
        order: torch.Tensor,
        hidden: Sequence[int],
        scale_bound: float = 5.0,
        context_dim: int = 0,
    ):
        super().__init__()
        self.register_buffer("order", order)
        self.made = MADE(order, hidden, n_out=2, context_dim=context_dim)
        self.scale_bound = scale_bound
        self.takes_context = context_dim > 0

    def _params(self, x: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        t, s = self.made(x, context).unbind(1)
        return t, self.scale_bound * torch.tanh(s / self.scale_bound)

    def inverse(self, x: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        t, s = self._params(x, context)
        return x * s.exp() + t, s.sum(1)

    def forward(self, z: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.zeros_like(z)
        for i in torch.argsort(self.order).tolist():  # coordinates in autoregressive order
            t, s = self._params(x, context)
            x = x.clone()
            x[:, i] = (z[:, i] - t[:, i]) * torch.exp(-s[:, i])
        _, s = self._params(x, context)
        return x, -s.sum(1)


class MAF(FlowModel):
    """Masked autoregressive flow: ``n_layers`` MADE-affine layers, orders reversed in turn.

    Args:
        event_shape: data shape (flattened).
        n_layers: number of autoregressive layers.
        hidden: hidden widths of each MADE.
        num_classes: ``K > 0``: a class-conditional flow ``p(x | c)``, the one-hot label fed
            to every MADE's first hidden layer (``cond`` then required).

    >>> import torch
    >>> MAF((3,), n_layers=2, hidden=(16,)).log_prob(torch.zeros(4, 3)).shape
    torch.Size([4])
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="likelihood", section="§3.1", exact_log_prob=True, accepts_labels=True
    )

    @property
    def sampling_nfe(self) -> int:
        """Sampling inverts each layer coordinate by coordinate: ``d`` passes per layer,
        counted as ``d`` (the layers run in sequence on the same sample)."""
        return self.dim

    def __init__(
        self,
        event_shape,
        n_layers: int = 5,
        hidden: Sequence[int] = (64, 64),
        num_classes: int = 0,
    ):
        super().__init__(event_shape)
        self.num_classes = check_num_classes(num_classes)
        n_layers = check_positive_int(n_layers, "n_layers")
        order = torch.arange(self.dim)
        for k in range(n_layers):
            self.transforms.append(
                MaskedAffineAutoregressive(
                    order if k % 2 == 0 else order.flip(0),
                    tuple(hidden),
                    context_dim=self.num_classes,
                )
            )
