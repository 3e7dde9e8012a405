"""What ``Trainer.fit`` accepts as data: a probpath ``Dataset``, a tensor or array, or a
PyTorch ``Dataset`` / ``DataLoader`` (read once into memory).

The Trainer draws its own seeded batches (that is what makes resume exact and DDP shards
disjoint), so a ``DataLoader``'s batch size, sampler and shuffling are not used: its items
are concatenated in order. Items may be tensors ``x`` or pairs ``(x, y)`` (labels for
conditional models).
"""

from __future__ import annotations

import numpy as np
import torch

from probpath.core.validation import check_tensor
from probpath.data.dataset import Dataset

__all__ = ["as_training_data", "bin_width", "dequantize_batch"]


def as_training_data(data) -> Dataset:
    """``data`` as a :class:`~probpath.data.dataset.Dataset` of shape ``(N, *event_shape)``.

    Args:
        data: a ``Dataset``; a tensor / NumPy array ``(N, ...)``; a
            ``torch.utils.data.DataLoader`` or ``torch.utils.data.Dataset`` whose items (or
            batches) are ``x`` or ``(x, y)``.

    Raises:
        TypeError: anything else.
        ValueError: empty, non-finite or non-numeric data, or items of different shapes.

    >>> loader = torch.utils.data.DataLoader(torch.arange(6.0).reshape(3, 2), batch_size=2)
    >>> as_training_data(loader).x.shape
    torch.Size([3, 2])
    """
    if isinstance(data, Dataset):
        check_tensor(data.x, "dataset.x", min_ndim=2)
        return data
    if isinstance(data, torch.Tensor | np.ndarray | list):
        return Dataset(x=_floating(check_tensor(data, "dataset", min_ndim=2)))
    from torch.utils.data import DataLoader
    from torch.utils.data import Dataset as TorchDataset

    if isinstance(data, DataLoader):
        return _concatenate(list(data), batched=data.batch_size is not None)
    if isinstance(data, TorchDataset):
        return _concatenate([data[i] for i in range(len(data))], batched=False)
    raise TypeError(
        f"data must be a probpath Dataset, a tensor or NumPy array (N, ...), or a torch "
        f"Dataset / DataLoader; got {type(data).__name__}"
    )


def _floating(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.float()


def _concatenate(items: list, *, batched: bool) -> Dataset:
    if not items:
        raise ValueError("the DataLoader / Dataset is empty; pass at least one sample")
    pairs = isinstance(items[0], tuple | list)
    xs = [torch.as_tensor(it[0] if pairs else it) for it in items]
    ys = [torch.as_tensor(it[1]) for it in items] if pairs and len(items[0]) > 1 else None
    try:
        x = torch.cat(xs) if batched else torch.stack(xs)
        y = None if ys is None else (torch.cat(ys) if batched else torch.stack(ys))
    except RuntimeError as exc:
        raise ValueError(
            f"the DataLoader / Dataset items differ in shape ({exc}); every sample must "
            "have the same shape"
        ) from None
    x = _floating(check_tensor(x, "dataset", min_ndim=2))
    if y is None:
        return Dataset(x=x)
    y = y.long().reshape(len(x))
    return Dataset(x=x, y=y, num_classes=int(y.max()) + 1)


def bin_width(data: Dataset, sample: torch.Tensor) -> float:
    """Width of one quantisation bin of discrete data, after checking the data is on the grid.

    The grid check is H1's ``probpath.metrics.dequantize`` (run once, on a slice); the noise
    added at each step follows the same convention: ``x + width * (u - 1/2)``,
    ``u ~ U[0, 1)``, uniform on the bin centred on each level.
    """
    if data.value_range is None or data.n_levels is None or data.n_levels < 2:
        raise ValueError(
            "the data set is marked discrete but has no value_range / n_levels, which "
            "dequantisation needs; set them on the Dataset or pass dequantize=False"
        )
    from probpath.metrics import dequantize

    dequantize(sample[:1024], data.n_levels, data.value_range, torch.Generator(sample.device))
    low, high = data.value_range
    return (float(high) - float(low)) / (data.n_levels - 1)


def dequantize_batch(x: torch.Tensor, width: float, generator: torch.Generator) -> torch.Tensor:
    """``x + width * (u - 1/2)``, ``u ~ U[0, 1)``: fresh uniform noise on each level's bin."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + width * (u - 0.5)
