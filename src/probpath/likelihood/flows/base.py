"""Transforms and the flow density model shared by every discrete normalizing flow (§3.1).

Convention: a :class:`Transform` maps in the *generative* direction, base ``z`` to data ``x``
(``forward``), and back (``inverse``); both return the transformed tensor and
``log|det J|`` of the map they applied, shape ``(batch,)``. A flow
``x = f_K ∘ … ∘ f_1(z_0)`` (Survey §3.1, Eq. 50) has the density of Eq. (51):
``log p(x) = log q_0(z_0) − Σ_k log|det ∂f_k/∂z_{k−1}|``, evaluated by running the inverses
from ``x`` back to ``z_0``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from probpath.core.model import Capabilities, Model, check_labels
from probpath.core.validation import check_event_shape, check_positive_int, check_tensor

__all__ = ["Transform", "FlowModel", "standard_normal_log_prob"]


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over all non-batch dimensions: ``(batch, ...) -> (batch,)``."""
    z = z.flatten(1)
    return -0.5 * (z.pow(2).sum(1) + z.shape[1] * math.log(2 * math.pi))


class Transform(nn.Module):
    """An invertible map ``z -> x`` with its log-determinant.

    Subclasses implement ``forward(z) -> (x, logabsdet)`` and ``inverse(x) -> (z, logabsdet)``
    on ``(batch, d)`` tensors; ``logabsdet`` has shape ``(batch,)`` and is that of the map
    applied (so ``inverse``'s is minus ``forward``'s at the corresponding point).
    """

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement inverse()")


class FlowModel(Model):
    """A standard-normal base pushed through a stack of transforms (Eq. 50–51).

    Subclasses set ``capabilities`` and build ``self.transforms`` (an ``nn.ModuleList``,
    applied in order from base to data) in their constructor after calling
    ``FlowModel.__init__(self, event_shape)``. Data are flattened to ``(batch, d)``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="likelihood", section="§3.1", exact_log_prob=True, one_step=True
    )

    def __init__(self, event_shape):
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        self.dim = math.prod(self.event_shape)
        self.transforms = nn.ModuleList()

    @property
    def sampling_nfe(self) -> int:
        """Network passes per sample: one pass through the stack of transforms."""
        return 1

    def _check(self, x) -> torch.Tensor:
        x = check_tensor(x, "x", event_shape=self.event_shape)
        return x.to(device=self.device, dtype=self._dtype()).flatten(1)

    def _dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return torch.get_default_dtype()

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map data ``(batch, *event_shape)`` to the base: returns ``z (batch, d)`` and
        ``Σ log|det|`` of the inverse maps ``(batch,)``."""
        z = x.flatten(1)
        total = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for t in reversed(self.transforms):
            z, ld = t.inverse(z)
            total = total + ld
        return z, total

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact ``log p(x)`` (Eq. 51), shape ``(batch,)``."""
        check_labels(cond, len(x), 0, type(self).__name__)  # unconditional: refuse labels
        z, logdet = self.inverse(self._check(x))
        return standard_normal_log_prob(z) + logdet

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood per sample (maximum likelihood, survey §1), ``(batch,)``."""
        return -self.log_prob(x, cond)

    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **options,
    ) -> torch.Tensor:
        """Draw ``n`` samples ``(n, *event_shape)``: ``z ~ N(0, I)`` through the transforms."""
        n = check_positive_int(n, "n")
        check_labels(cond, n, 0, type(self).__name__)
        z = torch.randn(n, self.dim, generator=generator, dtype=self._dtype())
        z = z.to(self.device)
        for t in self.transforms:
            z, _ = t(z)
        return z.reshape(n, *self.event_shape)
