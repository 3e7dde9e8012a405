"""Linear measurement operators ``y = A x + sigma_y n`` for inverse problems (survey §6).

Every operator maps a batch ``x`` ``(batch, *event_shape)`` to observations ``(batch,
*obs_shape)`` and provides its adjoint ``A^T``, its Moore-Penrose pseudo-inverse ``A^+`` and
the noise level ``sigma_y``; :meth:`LinearOperator.matrix` probes the dense ``(m, d)`` matrix
(float64), which the exact Gaussian-mixture posterior
(:meth:`~probpath.paths.oracle.GaussianMixtureOracle.posterior`) and ΠGDM's
``(r^2 A A^T + sigma_y^2 I)^{-1}`` use.

Images are ``(C, H, W)`` (spatial operators act on ``H, W``); vectors ``(D,)`` are treated as
1-D signals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from probpath.core.validation import check_event_shape, check_positive_int, check_tensor

__all__ = [
    "LinearOperator",
    "Inpainting",
    "SuperResolution",
    "GaussianBlur",
    "Denoising",
    "RandomProjection",
    "OPERATORS",
    "make_operator",
]


class LinearOperator:
    """Base class: subclasses implement :meth:`forward`, :meth:`adjoint` and :meth:`pinv`.

    Args:
        event_shape: shape of one signal ``x``.
        sigma_y: standard deviation of the observation noise (0: noiseless).
    """

    def __init__(self, event_shape: Sequence[int], sigma_y: float = 0.0):
        self.event_shape = check_event_shape(tuple(event_shape))
        if not float(sigma_y) >= 0.0:
            raise ValueError(f"sigma_y must be >= 0 (the noise std), got {sigma_y!r}")
        self.sigma_y = float(sigma_y)
        self._gram_eig: tuple[torch.Tensor, torch.Tensor] | None = None
        self._svd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def dim(self) -> int:
        """``d = prod(event_shape)``."""
        return math.prod(self.event_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for ``x`` ``(batch, *event_shape)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward (A x)")

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y`` ``(batch, *event_shape)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement adjoint (A^T y)")

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y`` ``(batch, *event_shape)`` (the minimum-norm least-squares solution)."""
        raise NotImplementedError(f"{type(self).__name__} must implement pinv (A^+ y)")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def observe(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A noisy measurement ``A x + sigma_y n`` (``n ~ N(0, I)`` drawn with ``generator``)."""
        x = check_tensor(x, "x", event_shape=self.event_shape)
        y = self.forward(x)
        if self.sigma_y == 0.0:
            return y
        n = torch.randn(y.shape, generator=generator, dtype=y.dtype, device="cpu")
        return y + self.sigma_y * n.to(y.device)

    def matrix(self) -> torch.Tensor:
        """The dense matrix ``(m, d)`` of ``A`` (float64), probed column by column."""
        eye = torch.eye(self.dim, dtype=torch.float64).reshape(self.dim, *self.event_shape)
        return self.forward(eye).reshape(self.dim, -1).T.contiguous()

    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(U (m, k), s (k,), V (d, k))`` with ``A = U diag(s) V^T`` (float64, cached)."""
        if self._svd is None:
            u, s, vh = torch.linalg.svd(self.matrix(), full_matrices=False)
            self._svd = (u, s, vh.T)
        return self._svd

    def solve_gram(self, v: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        """``(r^2 A A^T + sigma_y^2 I)^+ v`` for ``v`` ``(batch, m)`` and ``r2`` ``(batch,)``.

        Through the eigendecomposition of ``A A^T`` (computed once); a zero eigenvalue with
        ``sigma_y = 0`` is pseudo-inverted (its component is dropped).
        """
        if self._gram_eig is None:
            a = self.matrix()
            self._gram_eig = torch.linalg.eigh(a @ a.T)
        lam, q = (e.to(v) for e in self._gram_eig)
        denom = r2[:, None] * lam[None] + self.sigma_y**2
        tol = 1e-12 * float(lam.abs().max()) * (1 + float(r2.max()))
        inv = torch.where(denom > tol, 1.0 / denom.clamp_min(tol), torch.zeros_like(denom))
        return ((v @ q) * inv) @ q.T


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


class Inpainting(LinearOperator):
    """Observe the entries where ``mask`` is true: ``y = x[mask]`` ``(batch, m)``.

    ``A`` has orthonormal rows, so ``A^+ = A^T`` (zeros in the missing entries).

    Args:
        event_shape: signal shape.
        mask: bool ``event_shape`` (True: observed); default: the top half of an image
            (the first half of a vector) observed, the rest missing.
        sigma_y: noise level.
    """

    def __init__(self, event_shape, mask: torch.Tensor | None = None, sigma_y: float = 0.0):
        super().__init__(event_shape, sigma_y)
        if mask is None:
            mask = torch.zeros(self.event_shape, dtype=torch.bool)
            if len(self.event_shape) == 3:
                mask[:, : self.event_shape[1] // 2] = True
            else:
                mask.reshape(-1)[: self.dim // 2] = True
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.shape != self.event_shape or not mask.any():
            raise ValueError(f"mask must be a bool array of shape {self.event_shape}, not empty")
        self.mask = mask
        self.index = mask.reshape(-1).nonzero().squeeze(1)

    def forward(self, x):
        return _flat(x)[:, self.index.to(x.device)]

    def adjoint(self, y):
        out = torch.zeros(y.shape[0], self.dim, dtype=y.dtype, device=y.device)
        out[:, self.index.to(y.device)] = y
        return out.reshape(y.shape[0], *self.event_shape)

    def pinv(self, y):
        return self.adjoint(y)


class SuperResolution(LinearOperator):
    """Average-pool downsampling by ``factor`` (per spatial axis).

    ``A A^T = I / f^k`` (``k`` spatial axes), so ``A^+ = f^k A^T``: nearest-neighbour
    upsampling.
    """

    def __init__(self, event_shape, factor: int = 2, sigma_y: float = 0.0):
        super().__init__(event_shape, sigma_y)
        self.factor = check_positive_int(factor, "factor")
        spatial = self.event_shape[1:] if len(self.event_shape) == 3 else self.event_shape
        if any(s % self.factor for s in spatial):
            raise ValueError(f"factor {factor} must divide the signal size {spatial}")
        self._k = len(spatial)

    def _as_signal(self, x):
        return x if len(self.event_shape) == 3 else x.reshape(x.shape[0], 1, -1)

    def forward(self, x):
        s = self._as_signal(x)
        pool = F.avg_pool2d if self._k == 2 else F.avg_pool1d
        y = pool(s, self.factor)
        return y if len(self.event_shape) == 3 else _flat(y)

    def pinv(self, y):
        s = y if len(self.event_shape) == 3 else y.reshape(y.shape[0], 1, -1)
        up = F.interpolate(s, scale_factor=self.factor, mode="nearest")
        return up.reshape(y.shape[0], *self.event_shape)

    def adjoint(self, y):
        return self.pinv(y) / self.factor**self._k


class GaussianBlur(LinearOperator):
    """Circular convolution with a Gaussian kernel of standard deviation ``std`` pixels.

    Circular boundaries make ``A`` diagonal in the Fourier basis with real transfer
    function ``H`` (the kernel is symmetric): ``A^T = A`` and ``A^+`` divides by ``H`` where
    ``|H| > rtol max |H|`` (zero elsewhere).
    """

    def __init__(self, event_shape, std: float = 1.0, sigma_y: float = 0.0, rtol: float = 1e-3):
        super().__init__(event_shape, sigma_y)
        if not std > 0:
            raise ValueError(f"std must be positive, got {std!r}")
        self.std, self.rtol = float(std), float(rtol)
        spatial = self.event_shape[1:] if len(self.event_shape) == 3 else self.event_shape
        self._dims = tuple(range(-len(spatial), 0))
        grids = [torch.arange(n, dtype=torch.float64) for n in spatial]
        d2 = sum(
            torch.minimum(g, n - g).reshape([-1 if i == j else 1 for j in range(len(spatial))]) ** 2
            for i, (g, n) in enumerate(zip(grids, spatial, strict=True))
        )
        kernel = torch.exp(-0.5 * d2 / self.std**2)
        self.transfer = torch.fft.fftn(kernel / kernel.sum()).real  # (spatial) real, symmetric

    def _apply(self, x, h):
        shape = x.shape
        s = x if len(self.event_shape) == 3 else x.reshape(shape[0], -1)
        out = torch.fft.ifftn(torch.fft.fftn(s, dim=self._dims) * h.to(x.device), dim=self._dims)
        return out.real.to(x.dtype).reshape(shape)

    def forward(self, x):
        return self._apply(x, self.transfer)

    def adjoint(self, y):
        return self._apply(y, self.transfer)

    def pinv(self, y):
        h = self.transfer
        keep = h.abs() > self.rtol * h.abs().max()
        return self._apply(y, torch.where(keep, 1.0 / torch.where(keep, h, 1.0), 0.0))


class Denoising(LinearOperator):
    """``A = I``: the observation is the signal plus noise of std ``sigma_y``."""

    def forward(self, x):
        return x

    def adjoint(self, y):
        return y

    def pinv(self, y):
        return y


class RandomProjection(LinearOperator):
    """``m`` random Gaussian measurements ``A_ij ~ N(0, 1/d)`` (seeded)."""

    def __init__(self, event_shape, m: int, sigma_y: float = 0.0, seed: int = 0):
        super().__init__(event_shape, sigma_y)
        self.m = check_positive_int(m, "m")
        g = torch.Generator().manual_seed(int(seed))
        self.A = torch.randn(self.m, self.dim, generator=g, dtype=torch.float64) / math.sqrt(
            self.dim
        )
        self.A_pinv = torch.linalg.pinv(self.A)

    def forward(self, x):
        return _flat(x) @ self.A.to(x).T

    def adjoint(self, y):
        return (y @ self.A.to(y)).reshape(y.shape[0], *self.event_shape)

    def pinv(self, y):
        return (y @ self.A_pinv.to(y).T).reshape(y.shape[0], *self.event_shape)


OPERATORS = {
    "inpaint": Inpainting,
    "superres": SuperResolution,
    "deblur": GaussianBlur,
    "denoise": Denoising,
    "project": RandomProjection,
}


def make_operator(task: str, event_shape, sigma_y: float = 0.0, **options) -> LinearOperator:
    """The operator of ``task`` (a key of :data:`OPERATORS`) for signals of ``event_shape``."""
    if task not in OPERATORS:
        raise ValueError(f"task must be one of {', '.join(map(repr, OPERATORS))}; got {task!r}")
    return OPERATORS[task](event_shape, sigma_y=sigma_y, **options)
