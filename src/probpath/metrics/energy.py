"""Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Székely & Rizzo), Euclidean norm."""

from __future__ import annotations

import torch

from probpath.metrics._common import flatten_pair

__all__ = ["energy_distance"]

_MAX_ELEMENTS = 2**23  # pairwise values held at once (64 MiB in float64)


def _distance_sum(a: torch.Tensor, b: torch.Tensor) -> float:
    total = 0.0
    block = max(1, _MAX_ELEMENTS // max(len(b), 1))
    for i in range(0, len(a), block):
        d = torch.cdist(a[i : i + block], b, compute_mode="donot_use_mm_for_euclid_dist")
        total += float(d.sum())
    return total


def energy_distance(x, y, *, unbiased: bool = True) -> float:
    """The squared energy distance between the distributions of ``x`` and ``y``.

    ``D² = 2 E|X - Y| - E|X - X'| - E|Y - Y'|`` is zero iff the distributions are equal.
    With ``unbiased=True`` the within-sample terms average over distinct pairs (U-statistics:
    unbiased, centred on 0 for equal distributions, so it can be slightly negative);
    ``unbiased=False`` averages over all pairs
    (the V-statistic of the empirical distributions, the square of
    ``scipy.stats.energy_distance`` in one dimension).

    Args:
        x: ``(m, *event)`` samples, flattened to ``(m, D)`` (``m >= 2`` when unbiased).
        y: ``(n, *event)`` samples.

    Returns:
        A Python float (squared distance, not its root).

    Example:
        >>> import torch
        >>> energy_distance(torch.zeros(4, 2), torch.full((4, 2), 1.0))  # 2 |a - b|
        2.8284271247461903
    """
    x, y = flatten_pair(x, y, min_n=2 if unbiased else 1)
    m, n = len(x), len(y)
    sxx, syy, sxy = _distance_sum(x, x), _distance_sum(y, y), _distance_sum(x, y)
    if unbiased:
        return 2.0 * sxy / (m * n) - sxx / (m * (m - 1)) - syy / (n * (n - 1))
    return 2.0 * sxy / (m * n) - sxx / m**2 - syy / n**2
