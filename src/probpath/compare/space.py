"""How data reaches each model: :class:`DataSpace`, the affine map between a data set's
original space and one model's input space, and the seeded dequantisation of held-out data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from probpath.data.dataset import Dataset

__all__ = ["DataSpace", "dequantize_held_out"]


@dataclass(frozen=True)
class DataSpace:
    """The map between a data set's original space and one model's input space.

    ``y = scale * x + shift`` elementwise, then flattened when ``flatten`` (vector models on
    image data). The inverse maps samples back; ``log_abs_det`` is ``log|dy/dx|`` per sample,
    so ``log p_x(x) = log p_y(y) + log_abs_det``.

    Attributes:
        event_shape: one sample's shape in the original space, e.g. ``(1, 8, 8)``.
        flatten: the model sees ``(N, prod(event_shape))``.
        scale / shift: the affine map to ``[-1, 1]`` (``1, 0`` for unbounded data).
        discrete: the data are quantised (dequantise before evaluating densities).
        n_levels / value_range: the quantisation grid in the original space.
    """

    event_shape: tuple[int, ...]
    flatten: bool = False
    scale: float = 1.0
    shift: float = 0.0
    discrete: bool = False
    n_levels: int | None = None
    value_range: tuple[float, float] | None = None

    @classmethod
    def for_entry(cls, dataset: Dataset, data_kind: str = "any") -> DataSpace:
        """The space a model with ``entry.data == data_kind`` sees for ``dataset``.

        Bounded data (``dataset.value_range`` known) is scaled to ``[-1, 1]``; vector models
        get image (multi-axis) data flattened.
        """
        scale, shift = 1.0, 0.0
        vr = dataset.value_range
        if vr is not None:
            low, high = float(vr[0]), float(vr[1])
            if not high > low:
                raise ValueError(f"dataset value_range must have low < high, got {vr}")
            scale = 2.0 / (high - low)
            shift = -1.0 - scale * low
        shape = tuple(dataset.event_shape)
        return cls(
            event_shape=shape,
            flatten=data_kind == "vector" and len(shape) > 1,
            scale=scale,
            shift=shift,
            discrete=bool(dataset.discrete),
            n_levels=dataset.n_levels,
            value_range=None if vr is None else (float(vr[0]), float(vr[1])),
        )

    @property
    def dim(self) -> int:
        """Scalars per sample."""
        return math.prod(self.event_shape)

    @property
    def model_event_shape(self) -> tuple[int, ...]:
        """One sample's shape in the model's space."""
        return (self.dim,) if self.flatten else self.event_shape

    @property
    def log_abs_det(self) -> float:
        """``log|dy/dx|`` of the map for one sample: ``D log|scale|``."""
        return self.dim * math.log(abs(self.scale))

    @property
    def bin_width(self) -> float | None:
        """Width of one quantisation level in the original space (discrete data only)."""
        if not self.discrete or self.value_range is None or not self.n_levels:
            return None
        if self.n_levels < 2:
            return 1.0
        return (self.value_range[1] - self.value_range[0]) / (self.n_levels - 1)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *event_shape)`` original data -> the model's input ``(N, *model_event_shape)``."""
        y = x * self.scale + self.shift if (self.scale, self.shift) != (1.0, 0.0) else x
        return y.reshape(len(y), -1) if self.flatten else y

    def to_data(self, y: torch.Tensor) -> torch.Tensor:
        """Model-space samples -> the original space, shape ``(N, *event_shape)``."""
        y = y.reshape(len(y), *self.event_shape)
        if (self.scale, self.shift) == (1.0, 0.0):
            return y
        return (y - self.shift) / self.scale

    def model_dataset(self, dataset: Dataset) -> Dataset:
        """``dataset`` mapped to the model's space (labels and quantisation metadata kept)."""
        vr = None
        if self.value_range is not None:
            lo, hi = (v * self.scale + self.shift for v in self.value_range)
            vr = (min(lo, hi), max(lo, hi))
        return replace(dataset, x=self.to_model(dataset.x), value_range=vr)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (stored as ``data.json`` in a ``probpath fit`` run)."""
        d = asdict(self)
        d["event_shape"] = list(self.event_shape)
        d["value_range"] = None if self.value_range is None else list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpace:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on a malformed record."""
        try:
            vr = d.get("value_range")
            return cls(
                event_shape=tuple(int(s) for s in d["event_shape"]),
                flatten=bool(d.get("flatten", False)),
                scale=float(d.get("scale", 1.0)),
                shift=float(d.get("shift", 0.0)),
                discrete=bool(d.get("discrete", False)),
                n_levels=None if d.get("n_levels") is None else int(d["n_levels"]),
                value_range=None if vr is None else (float(vr[0]), float(vr[1])),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"malformed data-space record ({exc!r})") from None


def dequantize_held_out(x: torch.Tensor, space: DataSpace, seed: int) -> torch.Tensor:
    """One seeded uniform dequantisation of discrete data in its original space."""
    if not space.discrete or space.bin_width is None:
        return x
    from probpath.metrics import dequantize

    g = torch.Generator(device=x.device).manual_seed(seed)
    return dequantize(x, space.n_levels, space.value_range, generator=g)
