"""``Dataset``: tensors plus the metadata every model, metric and CLI command needs."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

__all__ = ["Dataset", "rescale"]


def rescale(x: torch.Tensor, src: tuple[float, float], dst: tuple[float, float]) -> torch.Tensor:
    """Map ``x`` affinely from the interval ``src = (low, high)`` onto ``dst``.

    Example: ``rescale(x, (0, 255), (-1, 1))`` scales 8-bit pixels to ``[-1, 1]``, and
    ``rescale(samples, (-1, 1), (0, 255))`` maps a model's samples back.
    """
    (a, b), (c, d) = (float(v) for v in src), (float(v) for v in dst)
    if not b > a or not d > c:
        raise ValueError(f"ranges must be (low, high) with low < high, got {src} and {dst}")
    return (x - a) * ((d - c) / (b - a)) + c


@dataclass(frozen=True)
class Dataset:
    """An in-memory data set.

    Attributes:
        x: data, shape ``(N, *event_shape)``, floating point.
        y: integer labels, shape ``(N,)``, or ``None``.
        name: a short name (the toy's name or the file's stem).
        value_range: ``(low, high)`` the values are known to lie in (``None`` if unbounded).
        discrete: whether values are quantised (e.g. pixel intensities); then
            ``n_levels`` gives the number of levels, for dequantisation and bits/dim.
        n_levels: number of equally spaced levels in ``value_range`` when ``discrete``:
            the values are ``low + k * bin_width`` for ``k = 0 .. n_levels - 1``, with
            ``bin_width = (high - low) / (n_levels - 1)``. Uniform dequantisation spreads
            each level over the bin of that width centred on it, and bits/dim of the discrete
            data use that bin width (``probpath.metrics.dataset_nll``). Scaling the data
            (:meth:`scaled`) scales the bin width with it, which leaves bits/dim unchanged.
        num_classes: number of label classes (0 without labels).
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    name: str = "data"
    value_range: tuple[float, float] | None = None
    discrete: bool = False
    n_levels: int | None = None
    num_classes: int = 0

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``."""
        return tuple(self.x.shape[1:])

    @property
    def dim(self) -> int:
        """Number of scalar values per sample (for bits/dim)."""
        return int(torch.tensor(self.event_shape).prod())

    @property
    def bin_width(self) -> float | None:
        """Spacing of the quantisation levels, ``None`` for continuous data."""
        if not self.discrete or self.value_range is None or (self.n_levels or 0) < 2:
            return None
        low, high = self.value_range
        return (float(high) - float(low)) / (int(self.n_levels) - 1)

    def scaled(self, low: float = -1.0, high: float = 1.0) -> Dataset:
        """The same data mapped affinely from ``value_range`` onto ``[low, high]``.

        Typical use: images to ``[-1, 1]`` for neural models. ``discrete`` and ``n_levels``
        are kept, so the bin width scales with the data; map samples back with
        ``rescale(samples, (low, high), original.value_range)``.
        """
        if self.value_range is None:
            raise ValueError(
                f"data set {self.name!r} has no value_range; scaling needs the (low, high) "
                "the values lie in (set value_range when building the Dataset)"
            )
        dst = (float(low), float(high))
        return replace(self, x=rescale(self.x, self.value_range, dst), value_range=dst)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: torch.Tensor) -> Dataset:
        """The rows ``index`` (a LongTensor) with the same metadata."""
        return replace(self, x=self.x[index], y=None if self.y is None else self.y[index])

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Seeded random train/test split."""
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        n = len(self)
        n_test = max(1, int(round(n * test_fraction)))
        if n_test >= n:
            raise ValueError(f"the data set has {n} samples: too few to split off a test set")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        return self.subset(perm[n_test:]), self.subset(perm[:n_test])

    def to(self, device=None, dtype: torch.dtype | None = None) -> Dataset:
        """Move ``x`` (and ``y``) to ``device``; cast ``x`` to ``dtype``."""
        x = self.x.to(device=device, dtype=dtype or self.x.dtype)
        y = None if self.y is None else self.y.to(device)
        return replace(self, x=x, y=y)
