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
from probpath.core.model import draw
from probpath.runs import load_run

__all__ = ["RunModel", "default_sample_options", "is_path_model", "load_run_model", "model_range"]


def is_path_model(model) -> bool:
    """Whether ``model`` samples through the shared path samplers (``--sampler``, ``--steps``,
    ``clip_x0``, trajectories): a :class:`~probpath.sampling.path_model.PathModel`."""
    from probpath.sampling.path_model import PathModel

    return isinstance(model, PathModel)


def model_range(space: DataSpace) -> tuple[float, float] | None:
    """The data's value range mapped into the model's space (``None`` for unbounded data)."""
    if space.value_range is None:
        return None
    low, high = (space.scale * float(v) + space.shift for v in space.value_range)
    return (min(low, high), max(low, high))


def default_sample_options(model, space: DataSpace) -> dict[str, Any]:
    """Sampler options a run's data calls for: on bounded data (images, counts) a path
    model clamps every ``x0_hat`` to the data range (``clip_x0``, diffusers' ``clip_sample``),
    which keeps few-step ODE samplers of short-trained eps-models inside the range."""
    clip = model_range(space)
    if clip is None or not is_path_model(model):
        return {}
    return {"clip_x0": clip}


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

        ``options`` (e.g. ``sampler``, ``steps``, ``clip_x0``) go to the model's ``sample``,
        after :func:`default_sample_options` (pass ``clip_x0=None`` to turn clipping off).
        """
        kwargs = {**default_sample_options(self.model, self.space), **options}
        if cond is not None:
            kwargs["cond"] = cond
        y = draw(self.model, n, generator=generator, **kwargs)
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


def load_run_model(
    directory: str | Path, device: str = "cpu", max_params: int | None = None
) -> RunModel:
    """Load a ``probpath fit`` run directory as a :class:`RunModel` (what ``probpath.load``
    returns for a directory with ``run.json``)."""
    model, record = load_run(directory, device=device, weights="auto", max_params=max_params)
    return RunModel(model, record.space, record)
