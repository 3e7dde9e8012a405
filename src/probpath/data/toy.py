"""Seeded synthetic data: the 2-D toy sets of the flow literature and N-D Gaussian mixtures.

The 2-D toys follow the conventional definitions of FFJORD's ``toy_data.py`` (moons,
circles, rings, 8gaussians, pinwheel, 2spirals, checkerboard, swissroll) and the 5x5 grid of
PacGAN / VEEGAN (25gaussians), all scaled to lie roughly in ``[-4, 4]^2``. Every point is an
independent draw (mixture components are chosen i.i.d. and positions along a curve are
uniform), so two calls give two independent samples of the same distribution — what the
two-sample metrics and their noise floor need.

Gaussian mixtures have known parameters, so their density, score and every probability-path
marginal are available in closed form (``paths/oracle.py``): the model of survey §1.1.2 with
known parameters, the test oracle of every route.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from probpath.core.validation import as_tensor, check_positive_int

__all__ = [
    "TOY_NAMES",
    "MixtureParams",
    "MixtureSample",
    "make_toy",
    "make_gaussian_mixture",
    "random_gaussian_mixture",
    "demo_gaussian_mixture",
    "resolve_generator",
]

_F64 = torch.float64


def resolve_generator(
    generator: torch.Generator | None = None, seed: int | None = None
) -> torch.Generator | None:
    """The generator to draw from: ``generator``, a fresh one seeded with ``seed``, or ``None``.

    ``None`` means torch's global generator. Passing both is ambiguous and raises.
    """
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ValueError(f"seed must be an int, got {seed!r}")
        return torch.Generator().manual_seed(int(seed))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator)}")
    return generator


def _randn(n: int, d: int, g) -> torch.Tensor:
    return torch.randn(n, d, generator=g, dtype=_F64)


def _rand(*shape: int, g) -> torch.Tensor:
    return torch.rand(*shape, generator=g, dtype=_F64)


def _choice(n: int, k: int, g) -> torch.Tensor:
    return torch.randint(0, k, (n,), generator=g)


def _moons(n: int, g) -> torch.Tensor:
    # scikit-learn's make_moons(noise=0.1), then FFJORD's affine map x * 2 + (-1, -0.2).
    upper = _choice(n, 2, g) == 0
    a = math.pi * _rand(n, g=g)
    outer = torch.stack([torch.cos(a), torch.sin(a)], 1)
    inner = torch.stack([1 - torch.cos(a), 0.5 - torch.sin(a)], 1)
    x = torch.where(upper[:, None], outer, inner) + 0.1 * _randn(n, 2, g)
    return x * 2 + torch.tensor([-1.0, -0.2], dtype=_F64)


def _circle_points(radius: torch.Tensor, g) -> torch.Tensor:
    a = 2 * math.pi * _rand(len(radius), g=g)
    return radius[:, None] * torch.stack([torch.cos(a), torch.sin(a)], 1)


def _circles(n: int, g) -> torch.Tensor:
    # make_circles(factor=0.5, noise=0.08) scaled by 3.
    radius = torch.tensor([1.0, 0.5], dtype=_F64)[_choice(n, 2, g)]
    return 3 * (_circle_points(radius, g) + 0.08 * _randn(n, 2, g))


def _rings(n: int, g) -> torch.Tensor:
    # Four concentric rings of radii (1, 0.8, 0.55, 0.25) * 3, noise 0.08.
    radius = 3 * torch.tensor([1.0, 0.8, 0.55, 0.25], dtype=_F64)[_choice(n, 4, g)]
    return _circle_points(radius, g) + 0.08 * _randn(n, 2, g)


def _eight_gaussians(n: int, g) -> torch.Tensor:
    # Centres 4 * (cos, sin)(k pi / 4), standard deviation 0.5, all divided by 1.414.
    angle = _choice(n, 8, g).to(_F64) * (math.pi / 4)
    centres = 4 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return (centres + 0.5 * _randn(n, 2, g)) / 1.414


def _twentyfive_gaussians(n: int, g) -> torch.Tensor:
    # 5 x 5 grid of means (-4 + 2i, -4 + 2j), standard deviation 0.05 (PacGAN, VEEGAN).
    idx = _choice(n, 25, g)
    centres = torch.stack([idx // 5, idx % 5], 1).to(_F64) * 2 - 4
    return centres + 0.05 * _randn(n, 2, g)


def _checkerboard(n: int, g) -> torch.Tensor:
    x1 = 4 * _rand(n, g=g) - 2
    x2 = _rand(n, g=g) - 2 * _choice(n, 2, g).to(_F64) + torch.remainder(torch.floor(x1), 2)
    return 2 * torch.stack([x1, x2], 1)


def _swissroll(n: int, g) -> torch.Tensor:
    # make_swiss_roll(noise=1.0) projected on its (x, z) plane, divided by 5.
    t = 1.5 * math.pi * (1 + 2 * _rand(n, g=g))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) + _randn(n, 2, g)
    return x / 5


def _two_spirals(n: int, g) -> torch.Tensor:
    r = torch.sqrt(_rand(n, g=g)) * (540 * 2 * math.pi / 360)
    arm = torch.stack([-torch.cos(r) * r, torch.sin(r) * r], 1) + 0.5 * _rand(n, 2, g=g)
    sign = 1 - 2 * _choice(n, 2, g).to(_F64)
    return sign[:, None] * arm / 3 + 0.1 * _randn(n, 2, g)


def _pinwheel(n: int, g) -> torch.Tensor:
    # Five arms: radial std 0.3, tangential std 0.1, rate 0.25, scaled by 2 (FFJORD).
    arm = _choice(n, 5, g).to(_F64)
    feat = _randn(n, 2, g) * torch.tensor([0.3, 0.1], dtype=_F64)
    feat[:, 0] += 1
    angle = arm * (2 * math.pi / 5) + 0.25 * torch.exp(feat[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    x = torch.stack([feat[:, 0] * c + feat[:, 1] * s, -feat[:, 0] * s + feat[:, 1] * c], 1)
    return 2 * x


_TOYS: dict[str, Callable[[int, torch.Generator | None], torch.Tensor]] = {
    "moons": _moons,
    "circles": _circles,
    "8gaussians": _eight_gaussians,
    "25gaussians": _twentyfive_gaussians,
    "checkerboard": _checkerboard,
    "swissroll": _swissroll,
    "2spirals": _two_spirals,
    "pinwheel": _pinwheel,
    "rings": _rings,
}

TOY_NAMES: tuple[str, ...] = tuple(_TOYS)
"""Names accepted by :func:`make_toy`."""


def make_toy(
    name: str,
    n: int,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``n`` i.i.d. points of a 2-D toy distribution.

    Args:
        name: one of :data:`TOY_NAMES`.
        n: number of points.
        generator: random source (``None``: torch's global generator).
        seed: alternatively, a seed for a fresh generator (not together with ``generator``).
        dtype: output dtype (points are drawn in float64, then cast).

    Returns:
        Tensor of shape ``(n, 2)``.

    Example:
        >>> make_toy("moons", 3, seed=0).shape
        torch.Size([3, 2])
    """
    if name not in _TOYS:
        raise ValueError(f"unknown toy data set {name!r}; choose one of: {', '.join(TOY_NAMES)}")
    n = check_positive_int(n, "n")
    g = resolve_generator(generator, seed)
    return _TOYS[name](n, g).to(dtype)


class MixtureParams(NamedTuple):
    """Parameters of a Gaussian mixture ``sum_k w_k N(mu_k, Sigma_k)`` (survey §1.1.2).

    Attributes:
        weights: ``(k,)`` mixing weights, positive, summing to one.
        means: ``(k, d)`` component means.
        covs: ``(k, d, d)`` symmetric positive-definite covariances.
    """

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor


class MixtureSample(NamedTuple):
    """Draws from a Gaussian mixture.

    Attributes:
        x: ``(n, d)`` points.
        labels: ``(n,)`` int64 index of the component each point came from.
    """

    x: torch.Tensor
    labels: torch.Tensor


def _check_mixture(weights, means, covs) -> MixtureParams:
    means = as_tensor(means, "means")
    dtype = means.dtype if means.is_floating_point() else _F64
    means = means.to(dtype)
    weights = as_tensor(weights, "weights", dtype=dtype)
    covs = as_tensor(covs, "covs", dtype=dtype)
    if means.ndim != 2:
        raise ValueError(f"means must have shape (k, d), got {tuple(means.shape)}")
    k, d = means.shape
    if weights.shape != (k,):
        raise ValueError(
            f"weights must have shape ({k},) to match means, got {tuple(weights.shape)}"
        )
    if covs.shape != (k, d, d):
        raise ValueError(f"covs must have shape ({k}, {d}, {d}), got {tuple(covs.shape)}")
    for name, t in (("weights", weights), ("means", means), ("covs", covs)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    if (weights <= 0).any() or abs(float(weights.sum()) - 1.0) > 1e-6:
        raise ValueError("weights must be positive and sum to 1; normalise them (w / w.sum())")
    if not torch.allclose(covs, covs.transpose(-1, -2), atol=1e-8, rtol=1e-6):
        raise ValueError("covs must be symmetric; use (c + c.T) / 2")
    return MixtureParams(weights, means, covs)


def make_gaussian_mixture(
    n: int,
    weights,
    means,
    covs,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> MixtureSample:
    """``n`` i.i.d. draws from ``sum_k w_k N(mu_k, Sigma_k)`` and their component labels.

    Args:
        n: number of points.
        weights: ``(k,)`` mixing weights (positive, summing to 1).
        means: ``(k, d)`` means.
        covs: ``(k, d, d)`` positive-definite covariances.
        generator: random source.
        dtype: output dtype; default the dtype of ``means`` (float64 for lists / NumPy).

    Returns:
        :class:`MixtureSample` ``(x (n, d), labels (n,))``.
    """
    n = check_positive_int(n, "n")
    w, mu, cov = _check_mixture(weights, means, covs)
    try:
        chol = torch.linalg.cholesky(cov)
    except RuntimeError:
        raise ValueError(
            "covs must be positive definite; add a small multiple of the identity"
        ) from None
    labels = torch.multinomial(w, n, replacement=True, generator=generator)
    eps = torch.randn(n, mu.shape[1], generator=generator, dtype=mu.dtype)
    x = mu[labels] + (chol[labels] @ eps[:, :, None])[:, :, 0]
    return MixtureSample(x.to(dtype or mu.dtype), labels)


def random_gaussian_mixture(
    dim: int, k: int, seed: int = 0, *, box: float = 4.0, scale: float = 0.5
) -> MixtureParams:
    """Reproducible random mixture parameters (float64), for tests and benchmarks.

    Means are uniform in ``[-box, box]^dim``; each covariance is ``Q diag(s) Q^T`` with a
    random rotation ``Q`` and variances ``s`` uniform in ``[0.3, 1] * scale**2``; weights are
    Dirichlet(5, ..., 5), so no component is negligible.

    Args:
        dim: dimension ``d``.
        k: number of components.
        seed: seed of the NumPy generator that draws the parameters.
        box: half-width of the box holding the means.
        scale: typical component standard deviation.

    Returns:
        :class:`MixtureParams` ``(weights (k,), means (k, d), covs (k, d, d))``.
    """
    dim = check_positive_int(dim, "dim")
    k = check_positive_int(k, "k")
    if not (box > 0 and scale > 0):
        raise ValueError(f"box and scale must be positive, got box={box}, scale={scale}")
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.uniform(-box, box, size=(k, dim))
    q, _ = np.linalg.qr(rng.standard_normal((k, dim, dim)))
    s = rng.uniform(0.3, 1.0, size=(k, dim)) * scale**2
    covs = np.einsum("kij,kj,klj->kil", q, s, q)
    covs = (covs + covs.transpose(0, 2, 1)) / 2
    return MixtureParams(*(torch.from_numpy(a).to(_F64) for a in (weights, means, covs)))


def demo_gaussian_mixture(dim: int = 2, k: int = 6) -> MixtureParams:
    """Parameters of the ``"gmm"`` data set of :func:`probpath.data.load_dataset`.

    ``random_gaussian_mixture(dim, k, seed=0)``: fixed, so the density is known exactly
    whatever seed draws the samples.
    """
    return random_gaussian_mixture(dim, k, seed=0)
