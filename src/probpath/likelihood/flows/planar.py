"""Planar and radial flows (Rezende & Mohamed, 2015; Survey §3.1, Eq. 52–53).

Both maps are invertible under a constraint that we enforce by reparameterisation, but
neither inverse has a closed form in general. ``log_prob`` of data therefore runs the
*numerical inverse* described in each class (a monotone scalar equation per layer, solved
to machine precision); gradients through it follow the implicit-function theorem by one
differentiable Newton step at the solution. The radial map's scalar equation is a
quadratic and is solved in closed form.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from probpath.core.validation import check_positive_int
from probpath.likelihood.flows.base import FlowModel, Transform

__all__ = ["PlanarTransform", "RadialTransform", "PlanarFlow", "RadialFlow"]


class PlanarTransform(Transform):
    """``f(z) = z + û h(wᵀz + b)`` with ``h = tanh`` (Eq. 52).

    The log-determinant is ``log|1 + h'(wᵀz + b) ûᵀw|`` (Eq. 53), computed in O(d).
    Invertibility needs ``wᵀû ≥ −1``; we use the standard reparameterisation
    ``û = u + (m(wᵀu) − wᵀu) w / |w|²`` with ``m(a) = −1 + softplus(a)``.

    Inverse: with ``α = wᵀz``, ``wᵀx = α + (wᵀû) tanh(α + b)`` is strictly increasing in
    ``α``; we solve it by bisection-safeguarded Newton, then ``z = x − û tanh(α + b)``.

    Amortised use (a VAE posterior, Eq. 54): pass ``params = (u, w, b)`` of shapes
    ``(batch, d), (batch, d), (batch,)`` produced by an inference network; without
    ``params`` the module's own (shared) parameters are used. :attr:`n_params` is the
    number of raw numbers per layer, :meth:`split` cuts a ``(batch, n_params)`` tensor.

    Shapes: ``(batch, d) -> (batch, d), (batch,)``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        w = torch.randn(dim) / math.sqrt(dim)
        # Start near a volume-preserving map: wᵀu = log(e − 1) makes m(wᵀu) = 0, so
        # wᵀû = 0 and only a small shear along the noise orthogonal to w remains.
        u = math.log(math.e - 1) * w / (w @ w) + 0.01 * torch.randn(dim)
        self.w = nn.Parameter(w)
        self.u = nn.Parameter(u)
        self.b = nn.Parameter(torch.zeros(()))

    @property
    def n_params(self) -> int:
        """Raw parameters per layer: ``u``, ``w`` and ``b``."""
        return 2 * self.dim + 1

    def split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(batch, n_params) -> (u (batch, d), w (batch, d), b (batch,))``."""
        return flat[:, : self.dim], flat[:, self.dim : 2 * self.dim], flat[:, -1]

    def own_params(self) -> torch.Tensor:
        """The shared parameters as one flat ``(n_params,)`` vector (order of :meth:`split`)."""
        return torch.cat([self.u, self.w, self.b[None]])

    def _uwb(self, params):
        u, w, b = (self.u, self.w, self.b) if params is None else params
        wu = (w * u).sum(-1, keepdim=True)
        u_hat = u + (-1.0 + F.softplus(wu) - wu) * w / (w * w).sum(-1, keepdim=True).clamp_min(
            1e-12
        )
        return u_hat, w, b, (w * u_hat).sum(-1)

    def u_hat(self) -> torch.Tensor:
        """The constrained ``û`` with ``wᵀû ≥ −1`` (shared parameters)."""
        return self._uwb(None)[0]

    def forward(self, z: torch.Tensor, params=None) -> tuple[torch.Tensor, torch.Tensor]:
        u, w, b, wu = self._uwb(params)
        h = torch.tanh((z * w).sum(-1) + b)
        x = z + h[:, None] * u
        psi = (1 - h.pow(2)) * wu
        return x, torch.log((1 + psi).abs().clamp_min(1e-30))

    @staticmethod
    def _solve_alpha(target: torch.Tensor, wu: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Root of ``g(α) = α + wu·tanh(α + b) − target`` (monotone), without gradients."""
        lo = target - wu.abs() - 1.0
        hi = target + wu.abs() + 1.0
        alpha = target.clone()
        tol = 8 * torch.finfo(target.dtype).eps
        for _ in range(100):
            g = alpha + wu * torch.tanh(alpha + b) - target
            lo = torch.where(g < 0, alpha, lo)
            hi = torch.where(g > 0, alpha, hi)
            dg = 1 + wu * (1 - torch.tanh(alpha + b).pow(2))
            step = alpha - g / dg.clamp_min(1e-12)
            inside = (step >= lo) & (step <= hi)
            done = g.abs() <= tol * (1 + target.abs())
            alpha = torch.where(done, alpha, torch.where(inside, step, 0.5 * (lo + hi)))
            if done.all():
                break
        return alpha

    def inverse(self, x: torch.Tensor, params=None) -> tuple[torch.Tensor, torch.Tensor]:
        u, w, b, wu = self._uwb(params)
        target = (x * w).sum(-1)
        with torch.no_grad():
            alpha = self._solve_alpha(target.detach(), wu.detach(), b.detach())
        # One differentiable Newton step at the root: same value, implicit-function gradients.
        g = alpha + wu * torch.tanh(alpha + b) - target
        dg = 1 + wu * (1 - torch.tanh(alpha + b).pow(2))
        alpha = alpha - g / dg
        h = torch.tanh(alpha + b)
        z = x - h[:, None] * u
        psi = (1 - h.pow(2)) * wu
        return z, -torch.log((1 + psi).abs().clamp_min(1e-30))


class RadialTransform(Transform):
    """``f(z) = z + β h(α, r)(z − z₀)``, ``h = 1/(α + r)``, ``r = |z − z₀|`` (Rezende & Mohamed).

    ``α = softplus(α̂) > 0`` and ``β = −α + softplus(β̂) ≥ −α`` keep the map invertible.
    ``log|det J| = (d − 1) log(1 + βh) + log(1 + βh + βh'r)`` with ``h' = −1/(α + r)²``.

    Inverse (closed form): ``r_x = |x − z₀| = r (1 + β/(α + r))`` gives the quadratic
    ``r² + (α + β − r_x) r − α r_x = 0`` whose non-negative root is ``r``; then
    ``z − z₀ = (x − z₀) / (1 + βh(r))``.

    Amortised use: ``params = (z0 (batch, d), alpha_raw (batch,), beta_raw (batch,))``, as
    for :class:`PlanarTransform`.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.z0 = nn.Parameter(torch.randn(dim) * 0.1)
        self.alpha_raw = nn.Parameter(torch.zeros(()))
        self.beta_raw = nn.Parameter(torch.zeros(()))

    @property
    def n_params(self) -> int:
        """Raw parameters per layer: ``z0``, ``alpha_raw`` and ``beta_raw``."""
        return self.dim + 2

    def split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(batch, n_params) -> (z0 (batch, d), alpha_raw (batch,), beta_raw (batch,))``."""
        return flat[:, : self.dim], flat[:, -2], flat[:, -1]

    def own_params(self) -> torch.Tensor:
        """The shared parameters as one flat ``(n_params,)`` vector (order of :meth:`split`)."""
        return torch.cat([self.z0, self.alpha_raw[None], self.beta_raw[None]])

    def _params(self, params):
        z0, a_raw, b_raw = (self.z0, self.alpha_raw, self.beta_raw) if params is None else params
        alpha = F.softplus(a_raw)
        return z0, alpha, -alpha + F.softplus(b_raw)

    @staticmethod
    def _logdet(r, alpha, beta, d: int) -> torch.Tensor:
        h = 1 / (alpha + r)
        bh = beta * h
        return (d - 1) * torch.log1p(bh) + torch.log1p(bh - beta * r * h.pow(2))

    def forward(self, z: torch.Tensor, params=None) -> tuple[torch.Tensor, torch.Tensor]:
        z0, alpha, beta = self._params(params)
        diff = z - z0
        r = diff.norm(dim=1)
        x = z + (beta / (alpha + r))[:, None] * diff
        return x, self._logdet(r, alpha, beta, z.shape[1])

    def inverse(self, x: torch.Tensor, params=None) -> tuple[torch.Tensor, torch.Tensor]:
        z0, alpha, beta = self._params(params)
        diff = x - z0
        rx = diff.norm(dim=1)
        c = alpha + beta - rx
        r = 0.5 * (-c + torch.sqrt(c.pow(2) + 4 * alpha * rx))
        z = z0 + diff / (1 + beta / (alpha + r))[:, None]
        return z, -self._logdet(r, alpha, beta, x.shape[1])


class _StackedFlow(FlowModel):
    """A flow of ``n_layers`` copies of one transform class."""

    transform_cls: type[Transform]

    def __init__(self, event_shape, n_layers: int = 16):
        super().__init__(event_shape)
        n_layers = check_positive_int(n_layers, "n_layers")
        self.transforms.extend(self.transform_cls(self.dim) for _ in range(n_layers))


class PlanarFlow(_StackedFlow):
    """Density model: ``N(0, I)`` through ``n_layers`` planar maps (§3.1, Eq. 52–53).

    ``log_prob`` of data uses the numerical inverse of :class:`PlanarTransform`.

    >>> import torch
    >>> PlanarFlow((2,), n_layers=2).sample(3, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 2])
    """

    transform_cls = PlanarTransform


class RadialFlow(_StackedFlow):
    """Density model: ``N(0, I)`` through ``n_layers`` radial maps (closed-form inverse)."""

    transform_cls = RadialTransform
