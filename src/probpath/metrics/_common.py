"""Shared input handling of the two-sample metrics: validate, flatten to ``(N, D)`` float64."""

from __future__ import annotations

import torch

from probpath.core.validation import check_tensor

__all__ = ["flatten_samples", "flatten_pair"]


def flatten_samples(x, name: str, *, min_n: int = 1) -> torch.Tensor:
    """``x`` of shape ``(N, *event)`` (or ``(N,)`` for scalars) as float64 ``(N, D)``."""
    x = check_tensor(x, name, min_ndim=1)
    if x.shape[0] < min_n:
        raise ValueError(f"{name} needs at least {min_n} samples, got {x.shape[0]}")
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x[:, None]
    return x.to(torch.float64)


def flatten_pair(x, y, *, min_n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Both samples flattened; they must have the same dimension ``D`` and device."""
    x, y = flatten_samples(x, "x", min_n=min_n), flatten_samples(y, "y", min_n=min_n)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same number of values per sample, got {x.shape[1]} and "
            f"{y.shape[1]}; flatten or reshape them to one event shape"
        )
    return x, y.to(x.device)
