"""RealNVP: affine coupling layers with ActNorm and permutations (Dinh et al., 2017; §3.1).

One block is ``ActNorm -> AffineCoupling -> Permutation``. The coupling keeps half of the
coordinates ``x_a`` and maps the rest affinely with a scale and shift computed from ``x_a``:
a triangular Jacobian whose log-determinant is the sum of the log-scales; both directions
cost one network call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probpath.core.model import Capabilities
from probpath.core.validation import check_positive_int
from probpath.likelihood.flows.base import FlowModel, Transform, check_num_classes
from probpath.nn.mlp import MLP

__all__ = ["ActNorm", "AffineCoupling", "Permutation", "RealNVP"]


class ActNorm(Transform):
    """Per-feature affine map ``x = z · exp(log_scale) + bias`` (Glow's ActNorm).

    Data-dependent initialisation: the first ``inverse`` call in training mode sets the
    parameters so that the data it sees come out with zero mean and unit variance.
    ``initialized`` is a buffer, so a saved and reloaded model does not re-initialise.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = z * self.log_scale.exp() + self.bias
        return x, self.log_scale.sum().expand(z.shape[0])

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized) and x.shape[0] > 1:
            with torch.no_grad():
                self.bias.copy_(x.mean(0))
                self.log_scale.copy_(x.std(0).clamp_min(1e-6).log())
                self.initialized.fill_(True)
        z = (x - self.bias) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum()).expand(x.shape[0])


class Permutation(Transform):
    """A fixed permutation of the features (log-determinant 0)."""

    def __init__(self, perm: torch.Tensor):
        super().__init__()
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z[:, self.perm], z.new_zeros(z.shape[0])

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, self.inv_perm], x.new_zeros(x.shape[0])


class AffineCoupling(Transform):
    """Affine coupling: ``z_a = x_a``, ``z_b = x_b · exp(s(x_a)) + t(x_a)`` in the density
    (data -> base) direction, so ``log|det ∂z/∂x| = Σ s``; the generative direction is
    ``x_b = (z_b − t) · exp(−s)``. ``s = scale_bound · tanh(·/scale_bound)`` is softly
    bounded. (Parameterising the cheap density direction, as zuko and Glow do, trains
    faster than shifting before scaling.)

    ``mask`` (shape ``(d,)``) marks the kept coordinates ``a`` (True / 1). The conditioner
    sees only ``x_a`` (``d_a`` inputs) and returns ``s, t`` for ``x_b`` only (``2 d_b``
    outputs); when ``a`` is the first or last block of coordinates the split is two slices
    and a concatenation, otherwise an index gather and scatter.
    """

    def __init__(
        self,
        mask: torch.Tensor,
        hidden: Sequence[int],
        scale_bound: float = 3.0,
        context_dim: int = 0,
    ):
        super().__init__()
        mask = torch.as_tensor(mask).bool().flatten()
        d_a = int(mask.sum())
        if not 0 < d_a < mask.numel():
            raise ValueError("mask must keep at least one and transform at least one coordinate")
        kept, free = mask.nonzero().flatten(), (~mask).nonzero().flatten()
        self.register_buffer("kept", kept)
        self.register_buffer("free", free)
        # Contiguous split: a = x[:, :d_a] (kept_first) or a = x[:, d - d_a:].
        contiguous = bool((kept.diff() == 1).all()) and bool((free.diff() == 1).all())
        self._slices = contiguous
        self._kept_first = bool(kept[0] == 0)
        # a context (one-hot label) is concatenated to the conditioner's input
        self.net = MLP(d_a + context_dim, 2 * free.numel(), hidden, act="relu")
        self.scale_bound = scale_bound
        self.takes_context = context_dim > 0

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._slices:
            return x[:, self.kept], x[:, self.free]
        d_a = self.kept.numel()
        if self._kept_first:
            return x[:, :d_a], x[:, d_a:]
        return x[:, x.shape[1] - d_a :], x[:, : x.shape[1] - d_a]

    def _join(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self._slices:
            return torch.cat((a, b) if self._kept_first else (b, a), dim=1)
        out = a.new_empty(a.shape[0], a.shape[1] + b.shape[1])
        return out.index_copy(1, self.kept, a).index_copy(1, self.free, b)

    def _st(self, kept: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = kept if context is None else torch.cat([kept, context], dim=1)
        s, t = self.net(inputs).chunk(2, dim=1)
        return self.scale_bound * torch.tanh(s / self.scale_bound), t

    def forward(self, z: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self._split(z)
        s, t = self._st(a, context)
        return self._join(a, (b - t) * torch.exp(-s)), -s.sum(1)

    def inverse(self, x: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self._split(x)
        s, t = self._st(a, context)
        return self._join(a, torch.addcmul(t, b, s.exp())), s.sum(1)


class RealNVP(FlowModel):
    """RealNVP density model: ``n_blocks`` × (ActNorm, affine coupling, permutation).

    Masks alternate between the two halves of the (flattened) features, and a fixed random
    permutation (seeded by ``perm_seed``) mixes coordinates between blocks.

    Args:
        event_shape: data shape; images are flattened.
        n_blocks: number of coupling blocks.
        hidden: hidden widths of each conditioner MLP.
        actnorm: include ActNorm layers.
        perm_seed: seed of the fixed permutations.
        num_classes: ``K > 0``: a class-conditional flow ``p(x | c)``, the one-hot label
            concatenated to every coupling conditioner's input (``cond`` then required).

    >>> import torch
    >>> m = RealNVP((2,), n_blocks=2, hidden=(8,))
    >>> m.log_prob(torch.zeros(3, 2)).shape
    torch.Size([3])
    """

    capabilities = Capabilities(
        route="likelihood", section="§3.1", exact_log_prob=True, one_step=True, accepts_labels=True
    )

    def __init__(
        self,
        event_shape,
        n_blocks: int = 6,
        hidden: Sequence[int] = (64, 64),
        actnorm: bool = True,
        perm_seed: int = 0,
        num_classes: int = 0,
    ):
        super().__init__(event_shape)
        self.num_classes = check_num_classes(num_classes)
        n_blocks = check_positive_int(n_blocks, "n_blocks")
        d = self.dim
        if d < 2:
            raise ValueError("RealNVP needs data with at least 2 features; use MAF or a Gaussian")
        g = torch.Generator().manual_seed(perm_seed)
        half = torch.arange(d) < (d + 1) // 2
        for k in range(n_blocks):
            if actnorm:
                self.transforms.append(ActNorm(d))
            mask = half if k % 2 == 0 else ~half
            self.transforms.append(
                AffineCoupling(mask, tuple(hidden), context_dim=self.num_classes)
            )
            if d > 2:
                self.transforms.append(Permutation(torch.randperm(d, generator=g)))
