"""Input checks that raise ``ValueError`` naming the argument and the fix (never ``assert``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "check_tensor",
    "check_positive_int",
    "check_probability",
    "check_choice",
    "check_event_shape",
    "as_tensor",
]


def as_tensor(x, name: str = "x", dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Convert array-likes (NumPy, lists, tensors) to a tensor, with a clear error otherwise."""
    if isinstance(x, torch.Tensor):
        out = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and other non-array input
            raise ValueError(
                f"{name} could not be read as an array ({exc}); pass a tensor or "
                "a rectangular NumPy array"
            ) from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(
                f"{name} has non-numeric dtype {arr.dtype}; pass numbers (convert or drop "
                "non-numeric columns first)"
            )
        out = torch.from_numpy(np.ascontiguousarray(arr))
    if dtype is not None or device is not None:
        out = out.to(dtype=dtype or out.dtype, device=device)
    return out


def check_tensor(
    x,
    name: str = "x",
    *,
    ndim: int | None = None,
    min_ndim: int | None = None,
    event_shape: Sequence[int] | None = None,
    finite: bool = True,
    allow_empty: bool = False,
    dtype: torch.dtype | None = None,
    device=None,
) -> torch.Tensor:
    """Validate a batch tensor and return it (converted with :func:`as_tensor`).

    Args:
        x: array-like of shape ``(batch, *event_shape)``.
        name: the argument's name, used in the error message.
        ndim / min_ndim: required (minimum) number of dimensions.
        event_shape: required trailing shape (the model's data shape).
        finite: reject NaN and infinity.
        allow_empty: accept a batch of size 0.
    """
    x = as_tensor(x, name, dtype=dtype, device=device)
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions (batch first), got shape "
            f"{tuple(x.shape)}; for a single sample use x[None]"
        )
    if event_shape is not None:
        event_shape = tuple(int(s) for s in event_shape)
        if tuple(x.shape[1:]) != event_shape or x.ndim != len(event_shape) + 1:
            raise ValueError(
                f"{name} must have shape (batch, {', '.join(map(str, event_shape))}) to match the "
                f"model, got {tuple(x.shape)}"
            )
    if not allow_empty and (x.ndim == 0 or x.shape[0] == 0):
        raise ValueError(f"{name} is empty; pass at least one sample")
    # One reduction on the hot path: a NaN or infinity makes the sum non-finite; only then
    # (or when finite values overflow the sum) look element-wise.
    if finite and x.is_floating_point() and not math.isfinite(float(x.sum())):
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(
                f"{name} contains {bad} NaN or infinite values; drop or impute them first"
            )
    return x


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an ``int >= 1`` or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_probability(value, name: str, *, open_low: bool = False) -> float:
    """Return ``value`` as a float in [0, 1] (or (0, 1] with ``open_low``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not (0.0 < v <= 1.0 if open_low else 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be in {'(0, 1]' if open_low else '[0, 1]'}, got {v}")
    return v


def check_choice(value, name: str, choices: Sequence[str]):
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_event_shape(shape, name: str = "event_shape") -> tuple[int, ...]:
    """Return a tuple of positive ints (an int ``d`` means ``(d,)``)."""
    if isinstance(shape, int | np.integer):
        shape = (int(shape),)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{name} must be a tuple of positive ints, got {shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {shape!r}")
    return shape
