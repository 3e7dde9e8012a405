"""scikit-learn's handwritten digits (8x8 images, 17 grey levels, 10 classes) as a ``Dataset``."""

from __future__ import annotations

import torch

from probpath.data.dataset import Dataset

__all__ = ["load_digits"]


def load_digits() -> Dataset:
    """The 1,797 UCI digits bundled with scikit-learn (no download).

    Pixels are integers 0..16, so the data set is discrete with ``n_levels=17`` and
    ``value_range=(0, 16)``: bits/dim are computed with bin width 1 (see
    :func:`probpath.metrics.dataset_nll`).

    Returns:
        :class:`Dataset` with ``x`` float32 of shape ``(1797, 1, 8, 8)`` and ``y`` int64 labels.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return Dataset(
        x=x,
        y=y,
        name="digits",
        value_range=(0.0, 16.0),
        discrete=True,
        n_levels=17,
        num_classes=10,
    )
