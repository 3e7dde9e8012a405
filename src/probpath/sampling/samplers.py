"""One sampler signature, the ``SAMPLERS`` table and :func:`sample_path` (what models call).

Every sampler is a stateless function

    sample_<name>(field, x_init, ts, *, generator=None, callback=None, cond=None, **options)

of a :class:`~probpath.paths.field.Field`, a start ``x_init`` at ``ts[0]`` and a decreasing
time grid ``ts`` (:func:`~probpath.sampling.timesteps.make_grid`). ``callback`` receives a dict
``{"i", "t", "t_next", "x", "x0_hat"}`` after each step. The number of network evaluations is
counted, not guessed: :func:`sample_path` wraps the field with
:func:`~probpath.paths.field.count_nfe` and returns it in :class:`SampleOutput`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from probpath.paths.field import ClippedField, Field, count_nfe
from probpath.sampling import multistep, ode, sde
from probpath.sampling.loop import SamplerSpec, as_function, run_sampler
from probpath.sampling.timesteps import check_grid, make_grid

__all__ = [
    "SAMPLER_SPECS",
    "SAMPLERS",
    "DEFAULT_SPACING",
    "SampleOutput",
    "get_sampler",
    "sample_path",
]

#: the registry: every sampler's :class:`~probpath.sampling.loop.SamplerSpec`, by name (read by
#: ``probpath info``, the CLI, ``compare``, the models and ``tests/sampling/test_registry.py``)
SAMPLER_SPECS: Mapping[str, SamplerSpec] = MappingProxyType(
    {spec.name: spec for spec in (*ode.SPECS, *multistep.SPECS, *sde.SPECS)}
)

#: ``sample_<name>(field, x_init, ts, *, generator, callback, cond, **options)`` by name
SAMPLERS = MappingProxyType({name: as_function(spec) for name, spec in SAMPLER_SPECS.items()})

#: the grid spacing each sampler defaults to
DEFAULT_SPACING = MappingProxyType({name: spec.spacing for name, spec in SAMPLER_SPECS.items()})


def default_grid(
    path, steps: int, spec: SamplerSpec, *, t_min: float | None = None, final_zero: bool = True
) -> torch.Tensor:
    """The grid :func:`sample_path` uses when none is given: ``spec``'s spacing from the
    path's ``t_max`` to ``t_min`` (then 0)."""
    return make_grid(
        path, spec.fixed_steps or steps, spec.spacing, t_min=t_min, final_zero=final_zero
    )


def get_sampler(name: str) -> SamplerSpec:
    """The :class:`~probpath.sampling.loop.SamplerSpec` called ``name`` (``ValueError`` listing
    the registered names otherwise)."""
    spec = SAMPLER_SPECS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(
            f"sampler must be one of {', '.join(map(repr, SAMPLER_SPECS))}; got {name!r} "
            "(see `probpath info`)"
        )
    return spec


@dataclass(frozen=True)
class SampleOutput:
    """Samples ``x`` ``(n, *event)``, the exact number of network evaluations and the grid."""

    x: torch.Tensor
    nfe: int
    ts: torch.Tensor


def sample_path(
    field: Field,
    shape: tuple[int, ...],
    *,
    sampler: str = "dpmpp_2m",
    steps: int = 20,
    grid: str | torch.Tensor | list[float] | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    x_init: torch.Tensor | None = None,
    cond=None,
    callback=None,
    t_min: float | None = None,
    final_zero: bool = True,
    clip_x0: tuple[float, float] | None = None,
    **options,
) -> SampleOutput:
    """Draw samples from ``field``: prior noise at ``t_max``, then ``sampler`` along a grid.

    Args:
        field: any :class:`~probpath.paths.field.Field`.
        shape: ``(n, *event_shape)``.
        sampler: a key of :data:`SAMPLERS`.
        steps: number of steps (NFE is ``steps`` for 1-NFE samplers, see each sampler).
        grid: a spacing name (``"uniform"``, ``"log_snr"``, ``"edm"``, ``"quadratic"``;
            default per sampler, :data:`DEFAULT_SPACING`) or explicit decreasing times.
        generator: for the prior draw and the samplers' noise.
        device, dtype: of the samples (default: the default dtype, CPU).
        x_init: start from this ``x`` at ``ts[0]`` instead of a prior draw.
        cond: conditioning passed to the field.
        t_min, final_zero: see :func:`~probpath.sampling.timesteps.make_grid`.
        clip_x0: ``(low, high)``: clamp every data prediction ``x0_hat`` to the data range
            (:class:`~probpath.paths.field.ClippedField`; diffusers' ``clip_sample``). Off by
            default; it keeps ODE samplers of short-trained eps-networks in range.
        **options: sampler options (``eta``, ``churn``, ``snr``, ``rtol``, ...).

    Returns:
        :class:`SampleOutput` with ``x``, the counted ``nfe`` and the grid ``ts``.
    """
    spec = get_sampler(sampler)
    if not isinstance(field, Field):
        raise ValueError(f"field must be a probpath Field, got {type(field).__name__}")
    shape = tuple(int(s) for s in shape)
    if not shape or shape[0] < 1:
        raise ValueError(f"shape must be (n, *event_shape) with n >= 1, got {shape}")
    path = field.path
    if grid is None:
        ts = default_grid(path, steps, spec, t_min=t_min, final_zero=final_zero)
    elif isinstance(grid, str):
        ts = make_grid(path, spec.fixed_steps or steps, grid, t_min=t_min, final_zero=final_zero)
    else:
        ts = check_grid(grid, "grid")
    if x_init is None:
        x_init = path.prior_sample(shape, generator=generator, device=device, dtype=dtype)
    if clip_x0 is not None:
        if not isinstance(clip_x0, list | tuple) or len(clip_x0) != 2:
            raise ValueError(f"clip_x0 must be a pair (low, high), e.g. (-1, 1); got {clip_x0!r}")
        field = ClippedField(field, *clip_x0)
    counted = count_nfe(field)
    x = run_sampler(
        spec, counted, x_init, ts, generator=generator, callback=callback, cond=cond, **options
    )
    return SampleOutput(x=x, nfe=counted.nfe, ts=ts)
