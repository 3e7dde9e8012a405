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

__all__ = ["Transform", "FlowModel", "check_num_classes", "standard_normal_log_prob"]


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over all non-batch dimensions: ``(batch, ...) -> (batch,)``."""
    z = z.flatten(1)
    return -0.5 * (z.pow(2).sum(1) + z.shape[1] * math.log(2 * math.pi))


def check_num_classes(value) -> int:
    """``num_classes`` of a flow as a non-negative int (0: unconditional)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"num_classes must be a non-negative integer, got {value!r}")
    return value


class Transform(nn.Module):
    """An invertible map ``z -> x`` with its log-determinant.

    Subclasses implement ``forward(z) -> (x, logabsdet)`` and ``inverse(x) -> (z, logabsdet)``
    on ``(batch, d)`` tensors; ``logabsdet`` has shape ``(batch,)`` and is that of the map
    applied (so ``inverse``'s is minus ``forward``'s at the corresponding point).
    Transforms with ``takes_context = True`` also take a ``context`` ``(batch, c)`` (the
    one-hot label of a class-conditional flow) as a second argument.
    """

    takes_context: bool = False

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement inverse()")


class FlowModel(Model):
    """A standard-normal base pushed through a stack of transforms (Eq. 50–51).

    Subclasses set ``capabilities`` and build ``self.transforms`` (an ``nn.ModuleList``,
    applied in order from base to data) in their constructor after calling
    ``FlowModel.__init__(self, event_shape)``. Data are flattened to ``(batch, d)``.
    A subclass with ``num_classes > 0`` is class-conditional: its context transforms read the
    one-hot label (:meth:`context`), and ``loss`` / ``log_prob`` / ``sample`` need ``cond``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="likelihood", section="§3.1", exact_log_prob=True, one_step=True
    )

    def __init__(self, event_shape):
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        self.dim = math.prod(self.event_shape)
        self.transforms = nn.ModuleList()
        self.num_classes = 0

    def context(self, cond, n: int) -> torch.Tensor | None:
        """The one-hot context ``(n, num_classes)`` of labels ``cond`` (``None`` when
        unconditional); raises for labels given to an unconditional flow and vice versa."""
        labels = check_labels(cond, n, self.num_classes, type(self).__name__, device=self.device)
        if labels is None:
            if self.num_classes:
                raise ValueError(
                    f"this {type(self).__name__} is conditional (num_classes="
                    f"{self.num_classes}): pass cond=labels"
                )
            return None
        return nn.functional.one_hot(labels, self.num_classes).to(self._dtype())

    @staticmethod
    def _run_transform(t: Transform, method: str, z: torch.Tensor, context):
        fn = getattr(t, method)
        return fn(z, context) if t.takes_context else fn(z)

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

    def inverse(self, x: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Map data ``(batch, *event_shape)`` to the base: returns ``z (batch, d)`` and
        ``Σ log|det|`` of the inverse maps ``(batch,)``."""
        z = x.flatten(1)
        total = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for t in reversed(self.transforms):
            z, ld = self._run_transform(t, "inverse", z, context)
            total = total + ld
        return z, total

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact ``log p(x)`` (Eq. 51), shape ``(batch,)``."""
        z, logdet = self.inverse(self._check(x), self.context(cond, len(x)))
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
        context = self.context(cond, n)
        z = torch.randn(n, self.dim, generator=generator, dtype=self._dtype())
        z = z.to(self.device)
        for t in self.transforms:
            z, _ = self._run_transform(t, "forward", z, context)
        return z.reshape(n, *self.event_shape)
