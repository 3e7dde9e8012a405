"""Array input and output of the classical estimators (NumPy in, NumPy out; torch in, torch out).

NumPy (and list, DataFrame) input is validated by scikit-learn's own ``validate_data``, so
sparse, complex, object, NaN and wrong-width input get scikit-learn's messages (each names
the fix: ``.toarray()``, a real dtype, imputation, the expected width); float32 stays
float32, everything else becomes float64. A torch tensor stays on its device and keeps a
float32 / float64 dtype; complex and sparse tensors get the same clear errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils.validation import validate_data

from probpath.core.validation import check_tensor

__all__ = ["ArrayFormat", "as_input", "as_output"]

_FLOATS = (torch.float32, torch.float64)


@dataclass(frozen=True)
class ArrayFormat:
    """Where an input came from: ``numpy`` (else torch) and its float dtype."""

    numpy: bool
    dtype: torch.dtype


def as_input(
    estimator,
    x,
    *,
    reset: bool,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    ensure_min_samples: int = 1,
) -> tuple[torch.Tensor, ArrayFormat]:
    """Validate ``x`` ``(N, d)`` for ``estimator`` and return it as a tensor and its format.

    Args:
        estimator: the estimator (``n_features_in_`` is set when ``reset``, else checked).
        x: NumPy array, array-like or torch tensor.
        reset: ``True`` in ``fit`` (records ``n_features_in_``), ``False`` afterwards.
        dtype: the computation dtype (``None``: float32 stays float32, else float64).
        device: the computation device (``None``: the tensor's own, or the CPU).
        ensure_min_samples: fewest rows accepted.
    """
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise ValueError(
                "Complex data not supported: X is a complex tensor; pass its real part "
                "(x.real) or a real-valued representation"
            )
        if x.layout != torch.strided:
            raise TypeError(
                "Sparse data was passed for X, but dense data is required; use "
                "x.to_dense() to convert it"
            )
        fmt = ArrayFormat(False, x.dtype if x.dtype in _FLOATS else torch.float64)
        t = check_tensor(x, "X", dtype=dtype or fmt.dtype, device=device or x.device)
        if t.ndim != 2:
            raise ValueError(
                f"X must be 2-D (n_samples, n_features), got shape {tuple(t.shape)}; use "
                "x[:, None] for a single feature or x[None] for a single sample"
            )
        if t.shape[0] < ensure_min_samples:
            raise ValueError(
                f"X has {t.shape[0]} sample(s) but a minimum of {ensure_min_samples} is required"
            )
        d = getattr(estimator, "n_features_in_", None)
        if reset:
            estimator.n_features_in_ = int(t.shape[1])
        elif d is not None and t.shape[1] != d:
            raise ValueError(
                f"X has {t.shape[1]} features, but {type(estimator).__name__} is expecting "
                f"{d} features as input (X has shape {tuple(t.shape)})"
            )
        return t, fmt
    np_dtype = None if dtype is None else {torch.float32: np.float32}.get(dtype, np.float64)
    arr = validate_data(
        estimator,
        x,
        reset=reset,
        dtype=[np.float64, np.float32] if np_dtype is None else np_dtype,
        ensure_min_samples=ensure_min_samples,
    )
    fmt = ArrayFormat(True, torch.float32 if arr.dtype == np.float32 else torch.float64)
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.to(dtype=dtype or fmt.dtype, device=device or "cpu"), fmt


def as_output(value: torch.Tensor, fmt: ArrayFormat):
    """``value`` in the caller's format: NumPy (floats in the input's dtype) or a tensor."""
    if value.is_floating_point():
        value = value.to(fmt.dtype)
    return value.detach().cpu().numpy() if fmt.numpy else value
