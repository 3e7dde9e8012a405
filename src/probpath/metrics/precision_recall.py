"""Improved precision and recall of a generative model (Kynkäänniemi et al., 2019).

Each sample set defines a manifold estimate: the union of balls around its points, each ball
reaching the point's ``k``-th nearest neighbour in the same set. Precision is the share of
generated samples inside the data's manifold (fidelity); recall is the share of data inside
the generated manifold (diversity: a model that drops modes loses recall, not precision).
Distances are Euclidean on the flattened values (the paper uses network features).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from probpath.core.validation import check_positive_int
from probpath.metrics._common import flatten_pair

__all__ = ["PrecisionRecall", "precision_recall"]

_MAX_ELEMENTS = 2**23


@dataclass(frozen=True)
class PrecisionRecall:
    """Attributes: precision and recall, both in ``[0, 1]``."""

    precision: float
    recall: float


def _pairwise(a: torch.Tensor, b: torch.Tensor):
    """Row blocks of the Euclidean distance matrix between ``a`` and ``b``."""
    block = max(1, _MAX_ELEMENTS // max(len(b), 1))
    for i in range(0, len(a), block):
        yield i, torch.cdist(a[i : i + block], b, compute_mode="donot_use_mm_for_euclid_dist")


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its ``k``-th nearest other point of the same set."""
    out = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for i, d in _pairwise(x, x):
        # the point itself sits at distance 0, so the k-th neighbour is the (k+1)-th smallest
        out[i : i + len(d)] = torch.kthvalue(d, k + 1, dim=1).values
    return out


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Share of ``points`` inside at least one ball ``|p - c_j| <= r_j``."""
    inside = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    for i, d in _pairwise(points, centres):
        inside[i : i + len(d)] = (d <= radii[None, :]).any(1)
    return float(inside.double().mean())


def precision_recall(real, fake, *, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall between data ``real`` and model samples ``fake``.

    Args:
        real: ``(m, *event)`` data samples, flattened to ``(m, D)`` (``m > k``).
        fake: ``(n, *event)`` generated samples (``n > k``).
        k: neighbour rank defining each ball's radius (3 in the paper).

    Returns:
        :class:`PrecisionRecall` of Python floats.

    Example:
        >>> x = torch.randn(50, 2)
        >>> precision_recall(x, x)
        PrecisionRecall(precision=1.0, recall=1.0)
    """
    k = check_positive_int(k, "k")
    real, fake = flatten_pair(real, fake, min_n=k + 1)
    precision = _coverage(fake, real, _knn_radii(real, k))
    recall = _coverage(real, fake, _knn_radii(fake, k))
    return PrecisionRecall(precision=precision, recall=recall)
