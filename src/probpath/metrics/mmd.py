"""Maximum mean discrepancy with Gaussian RBF kernels (unbiased U-statistic estimate of MMD²).

Kernel: ``k(a, b) = sum_l exp(-|a - b|^2 / (2 h_l^2))`` over one or several bandwidths
``h_l``. Default bandwidth: the median heuristic, ``h`` = median Euclidean distance between
distinct points of the pooled sample (Gretton et al., 2012).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from probpath.metrics._common import flatten_pair, flatten_samples

__all__ = ["mmd", "median_bandwidth"]

_MEDIAN_POINTS = 1000
_MAX_ELEMENTS = 2**23  # pairwise values held at once (64 MiB in float64)


def median_bandwidth(x, y=None) -> float:
    """Median pairwise distance of the pooled sample ``cat(x, y)`` (flattened), or of ``x``
    alone when ``y`` is ``None`` (a bandwidth fixed by reference data, as ``compare`` uses).

    At most 1,000 evenly strided points of the pooled sample are used (deterministic).
    If the median is 0 (more than half the points coincide) the mean of the non-zero
    distances is used, and 1.0 when every point is the same.
    """
    if y is None:
        z = flatten_samples(x, "x")
    else:
        x, y = flatten_pair(x, y)
        z = torch.cat([x, y])
    if len(z) > _MEDIAN_POINTS:
        z = z[torch.linspace(0, len(z) - 1, _MEDIAN_POINTS).round().long()]
    d = torch.nn.functional.pdist(z)
    h = float(d.median()) if d.numel() else 0.0
    if h <= 0.0:
        nonzero = d[d > 0]
        h = float(nonzero.mean()) if nonzero.numel() else 1.0
    return h


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, gammas: torch.Tensor, same: bool) -> float:
    """``sum_ij k(a_i, b_j)`` with ``k = sum_l exp(-gamma_l |a_i - b_j|^2)``, in row blocks.

    With ``same`` (``b is a``) the diagonal ``i == j`` is left out exactly.
    """
    total = 0.0
    b2 = b.pow(2).sum(1)
    block = max(1, _MAX_ELEMENTS // max(len(b), 1))
    for i in range(0, len(a), block):
        blk = a[i : i + block]
        d2 = (blk.pow(2).sum(1)[:, None] + b2[None, :] - 2.0 * blk @ b.T).clamp_min_(0.0)
        for g in gammas:
            kern = torch.exp(-g * d2)
            if same:
                kern.diagonal(offset=i).zero_()
            total += float(kern.sum())
    return total


def mmd(x, y, *, kernel: str = "rbf", bandwidth: float | Sequence[float] | None = None) -> float:
    """Unbiased estimate of the squared MMD between the distributions of ``x`` and ``y``.

    ``MMD²_u = 1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i, y_j)
    - 2/(mn) sum_{ij} k(x_i, y_j)``: its expectation is the population MMD², so it is
    centred on 0 for equal distributions (and can be slightly negative).

    Args:
        x: ``(m, *event)`` samples (``m >= 2``), flattened to ``(m, D)``.
        y: ``(n, *event)`` samples (``n >= 2``).
        kernel: ``"rbf"`` (Gaussian), the only kernel.
        bandwidth: ``h`` of ``exp(-|a-b|^2 / (2 h^2))``; a list sums one kernel per value;
            ``None`` uses :func:`median_bandwidth` of the pooled sample.

    Returns:
        A Python float.

    Example:
        >>> import torch
        >>> x = torch.zeros(3, 1); y = torch.ones(3, 1)
        >>> round(mmd(x, y, bandwidth=1.0), 6)  # 2 * (1 - exp(-1/2)), point masses
        0.786939
    """
    if kernel != "rbf":
        raise ValueError(f"kernel must be 'rbf' (Gaussian), got {kernel!r}")
    x, y = flatten_pair(x, y, min_n=2)
    if bandwidth is None:
        hs = [median_bandwidth(x, y)]
    else:
        hs = [bandwidth] if isinstance(bandwidth, int | float) else list(bandwidth)
        if not hs or any(not (float(h) > 0) for h in hs):
            raise ValueError(f"bandwidth must be positive (or a list of them), got {bandwidth!r}")
    gammas = torch.tensor([1.0 / (2.0 * float(h) ** 2) for h in hs], dtype=torch.float64)
    m, n = len(x), len(y)
    kxx = _kernel_sum(x, x, gammas, same=True) / (m * (m - 1))
    kyy = _kernel_sum(y, y, gammas, same=True) / (n * (n - 1))
    kxy = _kernel_sum(x, y, gammas, same=False) / (m * n)
    return kxx + kyy - 2.0 * kxy
