"""``Dataset``: tensors plus the metadata every model, metric and CLI command needs."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

__all__ = ["Dataset"]


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
        n_levels: number of equally spaced levels in ``value_range`` when ``discrete``.
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
