"""Sliced Wasserstein distance: exact 1-D optimal transport along random directions."""

from __future__ import annotations

import torch

from probpath.core.validation import check_positive_int
from probpath.metrics._common import flatten_pair

__all__ = ["sliced_wasserstein", "wasserstein_1d"]


def wasserstein_1d(u: torch.Tensor, v: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``W_p^p`` between the empirical measures of the columns of ``u`` and ``v``.

    Exact for any sizes: ``W_p^p = int_0^1 |F^-1(s) - G^-1(s)|^p ds`` with the quantile
    functions piecewise constant between the levels ``i/m`` and ``j/n``; with ``m == n`` this
    is the mean of ``|u_(i) - v_(i)|^p`` over the sorted values.

    Args:
        u: ``(m, L)`` values (one column per direction).
        v: ``(n, L)`` values.

    Returns:
        ``(L,)`` tensor of ``W_p^p``.
    """
    m, n = u.shape[0], v.shape[0]
    us, vs = torch.sort(u, dim=0).values, torch.sort(v, dim=0).values
    if m == n:
        return (us - vs).abs().pow(p).mean(0)
    dt = u.dtype
    levels = torch.cat([torch.arange(1, m + 1, dtype=dt) / m, torch.arange(1, n + 1, dtype=dt) / n])
    levels = torch.unique(levels.clamp(max=1.0)).to(u.device)  # sorted, last = 1
    width = torch.diff(levels, prepend=levels.new_zeros(1))
    mid = levels - width / 2
    iu = torch.clamp((mid * m).floor().long(), max=m - 1)
    iv = torch.clamp((mid * n).floor().long(), max=n - 1)
    return ((us[iu] - vs[iv]).abs().pow(p) * width[:, None]).sum(0)


def sliced_wasserstein(
    x,
    y,
    *,
    n_projections: int = 256,
    p: float = 2.0,
    generator: torch.Generator | None = None,
    projections: torch.Tensor | None = None,
) -> float:
    """Monte Carlo sliced Wasserstein distance ``SW_p = (E_theta W_p^p(theta#x, theta#y))^(1/p)``.

    Directions ``theta`` are uniform on the unit sphere; each 1-D distance is exact
    (:func:`wasserstein_1d`: sorted values for equal sizes, merged quantile levels
    otherwise, so ``x`` and ``y`` may have different sizes).

    Args:
        x: ``(m, *event)`` samples, flattened to ``(m, D)``.
        y: ``(n, *event)`` samples.
        n_projections: number of random directions ``L``.
        p: order ``p >= 1``.
        generator: random source of the directions.
        projections: optional ``(L, D)`` directions to use instead (normalised to unit length).

    Returns:
        A Python float (the distance, not its p-th power).
    """
    x, y = flatten_pair(x, y)
    if not float(p) >= 1.0:
        raise ValueError(f"p must be >= 1, got {p}")
    d = x.shape[1]
    if projections is None:
        n_projections = check_positive_int(n_projections, "n_projections")
        theta = torch.randn(n_projections, d, generator=generator, dtype=torch.float64)
    else:
        theta = torch.as_tensor(projections, dtype=torch.float64)
        if theta.ndim != 2 or theta.shape[1] != d:
            raise ValueError(f"projections must have shape (L, {d}), got {tuple(theta.shape)}")
    theta = theta / theta.norm(dim=1, keepdim=True).clamp_min(1e-300)
    theta = theta.to(x.device)
    return float(wasserstein_1d(x @ theta.T, y @ theta.T, p).mean()) ** (1.0 / float(p))
