"""A fitted run as the CLI sees it: :class:`RunModel` speaks the data's own space and uses
the weights ``fit`` evaluated with (the EMA copy when it used it).

``probpath.load(run_dir)`` returns one for a ``probpath fit`` run directory (one with
``run.json``), so ``probpath.load(run).sample(n)`` gives what ``probpath sample run`` writes,
and ``log_prob`` is the density of the data in its own units (the model's density plus the
log-Jacobian of the data-to-model map, as ``evaluate`` and ``compare`` score it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from probpath.compare.fitting import model_device_dtype
from probpath.compare.space import DataSpace

__all__ = ["RunModel", "load_run_model"]


class RunModel:
    """A fitted model seen through its run's :class:`DataSpace`.

    Attributes:
        model: the underlying model (model space: scaled, images flattened for vector
            models), with the weights ``fit`` evaluated with.
        space: the data-to-model map.
        record: the run record (``run.json``).

    Other attributes (``capabilities``, ``sampling_nfe``, ``field``, ...) are the model's.
    """

    def __init__(self, model, space: DataSpace, record: Any = None):
        self.model = model
        self.space = space
        self.record = record

    def __getattr__(self, name: str):
        if name in ("model", "space", "record"):  # not yet set (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.model, name)

    def __repr__(self) -> str:
        return f"RunModel({type(self.model).__name__}, event_shape={self.space.event_shape})"

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The data's shape per sample."""
        return tuple(self.space.event_shape)

    @torch.no_grad()
    def sample(self, n: int, cond=None, generator: torch.Generator | None = None, **options):
        """``n`` samples ``(n, *event_shape)`` in the data's space (float64, on the CPU).

        ``options`` (e.g. ``sampler``, ``steps``, ``clip_x0``) go to the model's ``sample``.
        """
        kwargs = dict(options)
        if cond is not None:
            kwargs["cond"] = cond
        y = self.model.sample(n, generator=generator, **kwargs)
        return self.space.to_data(y.detach().double().cpu())

    def log_prob(self, x, cond=None) -> torch.Tensor:
        """``log p(x)`` per sample of data-space ``x`` ``(batch, *event_shape)``.

        ``log p_x(x) = log p_model(space.to_model(x)) + space.log_abs_det`` (a bound where the
        model's ``log_prob`` is a bound; discrete data: the density of dequantised data).
        """
        device, dtype = model_device_dtype(self.model)
        y = self.space.to_model(torch.as_tensor(x).double()).to(device=device, dtype=dtype)
        lp = self.model.log_prob(y) if cond is None else self.model.log_prob(y, cond)
        return lp.double().cpu() + self.space.log_abs_det


def load_run_model(directory: str | Path, device: str = "cpu") -> RunModel:
    """Load a ``probpath fit`` run directory as a :class:`RunModel` (what ``probpath.load``
    returns for a directory with ``run.json``)."""
    from probpath.cli.rundir import load_run

    model, record = load_run(directory, device=device, weights="auto")
    return RunModel(model, record.space, record)
