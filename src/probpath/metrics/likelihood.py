"""Likelihood metrics: uniform dequantisation, NLL in nats/dim and bits/dim.

Why the bin width enters bits/dim (Theis et al., 2016). Discrete data take values on a grid
of spacing ``Delta`` (``Dataset.bin_width``). A density ``p`` on ``R^D`` defines the discrete
model ``P(k) = int_{bin(k)} p(x) dx`` over the cube ``bin(k) = k + Delta [-1/2, 1/2)^D`` of
volume ``Delta^D``. Writing the integral as an average over ``u ~ U(bin(k))`` and applying
Jensen's inequality:

    log P(k) = log E_u[p(u) Delta^D] >= E_u[log p(u)] + D log Delta,

so on uniformly dequantised data ``x = k + u``

    bits/dim = -(log p(x) + D log Delta) / (D ln 2)

is an upper bound (in expectation) on the discrete model's ``-log2 P(k) / D``, and the number
the literature reports (survey §5, Table 4). Check: the uniform density on the dequantised
support of ``L`` levels has ``p = (L Delta)^-D``, so bits/dim ``= log2 L`` whatever
``Delta``. Scaling the data by ``s`` multiplies ``Delta`` by ``s`` and ``p`` by ``s^-D``:
bits/dim do not change, so a model trained on data scaled to ``[-1, 1]`` reports the same
bits/dim as in pixel units provided the bin width is scaled too (:func:`dataset_nll`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from probpath.core.validation import check_tensor
from probpath.data.dataset import Dataset

__all__ = ["NLLResult", "dequantize", "quantize", "bits_per_dim", "nll_nats", "dataset_nll"]


def _grid(n_levels: int, value_range: tuple[float, float]) -> tuple[float, float]:
    """``(low, Delta)`` of a grid of ``n_levels`` levels in ``value_range`` (checked)."""
    if isinstance(n_levels, bool) or not isinstance(n_levels, int) or n_levels < 2:
        raise ValueError(f"n_levels must be an integer >= 2, got {n_levels!r}")
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    return low, (high - low) / (n_levels - 1)


def dequantize(
    x: torch.Tensor,
    n_levels: int,
    value_range: tuple[float, float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Uniform dequantisation: spread each grid value over its bin.

    The values are ``low + k * Delta`` with ``Delta = (high - low) / (n_levels - 1)``; each
    gets ``Delta * (u - 1/2)``, ``u ~ U[0, 1)``, added, so the result is uniform on the bin
    centred on its level and lies in ``[low - Delta/2, high + Delta/2)``.

    Args:
        x: ``(batch, *event)`` values on the grid (e.g. ``Dataset.x``, scaled or not).
        n_levels: number of levels ``L >= 2``.
        value_range: ``(low, high)``: the lowest and highest level.
        generator: random source.

    Returns:
        Tensor like ``x`` (floating point).
    """
    x = check_tensor(x, "x", min_ndim=1)
    low, delta = _grid(n_levels, value_range)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    k = (x - low) / delta
    if (k - k.round()).abs().max() > 1e-3 or k.min() < -1e-3 or k.max() > n_levels - 1 + 1e-3:
        raise ValueError(
            f"x is not on the grid of {n_levels} levels in {value_range}; dequantise the raw "
            "data (or pass the value_range of the scaled data) and do it only once"
        )
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + delta * (u - 0.5)


def quantize(x: torch.Tensor, n_levels: int, value_range: tuple[float, float]) -> torch.Tensor:
    """Snap values to the nearest of ``n_levels`` levels in ``value_range`` (clamped to the
    range): what saving a sample as an image file does, and the inverse of
    :func:`dequantize` (``quantize(dequantize(x)) == x`` for ``x`` on the grid).

    Args:
        x: ``(batch, *event)`` values in the grid's units.
        n_levels, value_range: the grid, as in :func:`dequantize`.

    Returns:
        Tensor like ``x`` (floating point), on the grid.
    """
    x = check_tensor(x, "x", min_ndim=1)
    low, delta = _grid(n_levels, value_range)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return low + delta * ((x - low) / delta).round().clamp(0, n_levels - 1)


def _mean_log_prob(log_prob) -> torch.Tensor:
    lp = torch.as_tensor(log_prob, dtype=torch.float64).detach().reshape(-1)
    if lp.numel() == 0:
        raise ValueError("log_prob is empty; pass one value per sample")
    if not torch.isfinite(lp).all():
        raise ValueError("log_prob contains NaN or infinite values; the model is degenerate")
    return lp


def bits_per_dim(log_prob, dim: int, *, bin_width: float = 1.0) -> float:
    """Mean bits per dimension ``-(log p + D log(bin_width)) / (D ln 2)``.

    Args:
        log_prob: ``(batch,)`` natural-log densities of dequantised data (or their mean).
        dim: ``D``, the number of values per sample.
        bin_width: width ``Delta`` of one quantisation bin in the space where ``log_prob``
            is a density (1 for integer pixel values, ``2/255`` for 8-bit images in
            ``[-1, 1]``); see the module docstring for the derivation.

    Returns:
        A Python float.

    Example:
        >>> round(bits_per_dim(torch.tensor([-64 * math.log(17.0)]), 64), 6)  # uniform
        4.087463
    """
    lp = _mean_log_prob(log_prob)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if not float(bin_width) > 0:
        raise ValueError(f"bin_width must be positive, got {bin_width!r}")
    return -(float(lp.mean()) + dim * math.log(float(bin_width))) / (dim * math.log(2.0))


def nll_nats(log_prob, dim: int = 1) -> float:
    """Mean negative log-likelihood in nats per dimension, ``-mean(log p) / D``."""
    lp = _mean_log_prob(log_prob)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    return -float(lp.mean()) / dim


@dataclass(frozen=True)
class NLLResult:
    """A per-dimension negative log-likelihood on a data set.

    Attributes:
        value: mean over samples.
        stderr: standard error of that mean (0 for a single sample).
        unit: ``"bits/dim"`` (discrete data, dequantised) or ``"nats/dim"`` (continuous).
    """

    value: float
    stderr: float
    unit: str


def dataset_nll(
    log_prob, dataset: Dataset, *, model_range: tuple[float, float] | None = None
) -> NLLResult:
    """NLL per dimension of ``dataset`` in its original units, from a model's ``log_prob``.

    Discrete data give bits/dim (``log_prob`` evaluated on dequantised data); continuous data
    give nats/dim. If the model saw the data mapped affinely from ``dataset.value_range`` onto
    ``model_range`` (e.g. ``(-1, 1)`` via :meth:`Dataset.scaled`), its density is converted
    back: with ``s = width(model_range) / width(value_range)``, ``log p_data = log p_model +
    D log s`` (change of variables), equivalently a bin width of ``s * Delta``.

    Args:
        log_prob: ``(batch,)`` log-densities from the model, in the model's space.
        dataset: the data set the samples come from (for ``dim``, ``discrete``, ...).
        model_range: the range the model's data were scaled to, or ``None`` if unscaled.

    Returns:
        :class:`NLLResult`.
    """
    lp = _mean_log_prob(log_prob)
    dim = dataset.dim
    log_s = 0.0
    if model_range is not None:
        if dataset.value_range is None:
            raise ValueError("model_range needs dataset.value_range (the unscaled range)")
        (a, b), (c, d) = dataset.value_range, model_range
        if not (b > a and d > c):
            raise ValueError(
                f"ranges must be (low, high), got {dataset.value_range} and {model_range}"
            )
        log_s = math.log((d - c) / (b - a))
    # per-sample values, then mean and standard error
    per_dim = -(lp + dim * log_s) / dim
    unit = "nats/dim"
    if dataset.discrete:
        width = dataset.bin_width
        if width is None:
            raise ValueError("discrete data need n_levels >= 2 and value_range for bits/dim")
        per_dim = (per_dim - math.log(width)) / math.log(2.0)
        unit = "bits/dim"
    stderr = float(per_dim.std() / math.sqrt(len(per_dim))) if len(per_dim) > 1 else 0.0
    return NLLResult(value=float(per_dim.mean()), stderr=stderr, unit=unit)
