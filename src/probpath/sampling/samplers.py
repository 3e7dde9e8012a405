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

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from probpath.core.validation import check_positive_int
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
    "range_rule_grid",
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


#: the default grid of the exponential integrators (spacing "log_snr") on paths that end at
#: sigma = 0: log-SNR spacing over sigma_tilde = sigma / alpha in [sigma_min, sigma_max] after
#: one jump from t_max to sigma_max, then the final step to 0, both ends proportional to the
#: data's standard deviation sigma_data (1 when unknown: standardised data).
#: sigma_max = SIGMA_MAX_RATIO sigma_data sqrt(d) (sigma_max_rule): above it x0_hat barely
#: changes and the exponential integrators cross that range exactly in one step. The sqrt(d):
#: the posterior weights of two modes at distance ~ sqrt(2 d) sigma_data differ by a log-ratio ~
#: sqrt(2 d) sigma_data / sigma_tilde, so in d dimensions the modes separate at sigma_tilde ~
#: sqrt(d) sigma_data (with sigma_max = 10 sigma_data, one draw in 32 of a 64-d problem jumped
#: to the wrong mode: benchmarks/README.md). sigma_min = SIGMA_MIN_RATIO sigma_data at 5 steps
#: (a per-coordinate scale: the modes' widths), divided by sqrt(10) per doubling of the steps,
#: never below the path's t_min. Ratios chosen on bench_samplers' tuning seeds 0-7 (data scales
#: 0.5-8, d 2-64, four path kinds), reported on seeds 8-23: an absolute range (0.3 .. 80) lost
#: up to 6x on data of scale 0.5 or 8, and spending the last evaluation at t_min = 1/N wastes
#: one NFE in five at 5 steps. A search over 36 rules on seeds 0-23 kept these ratios; on the
#: fresh seeds 24-47 one draw in 32 switching mode still costs up to 60x in single cells
#: (benchmarks/README.md). The dimension in sigma_max is at least SIGMA_MAX_DIM_PER_STEP *
#: steps: the one jump from t_max leaves an error that more steps below sigma_max do not reduce,
#: so with many steps in few dimensions the jump must start lower in x0_hat's drift (VP-kind 2-D
#: tuning seeds 30-42 at 20 steps: RMS error 0.23x and median error 0.48x diffusers' best with
#: the jump at twice 2 sigma_data sqrt(2), against 1.44x / 2.18x; at 5 steps the plain rule was
#: better; benchmarks/README.md).
SIGMA_MAX_RATIO = 2.0
SIGMA_MIN_RATIO = 0.2
SIGMA_MAX_DIM_PER_STEP = 0.4


def sigma_max_rule(steps: int, sigma_data: float = 1.0, dim: int = 1) -> float:
    """``sigma_tilde`` of the default grid's first jump target with ``steps`` steps for data
    of ``dim`` dimensions: ``SIGMA_MAX_RATIO sigma_data sqrt(max(dim, SIGMA_MAX_DIM_PER_STEP
    steps))``."""
    return SIGMA_MAX_RATIO * sigma_data * math.sqrt(max(dim, SIGMA_MAX_DIM_PER_STEP * steps))


def sigma_min_rule(steps: int, sigma_data: float = 1.0) -> float:
    """``sigma_tilde`` of the last network time of the default grid with ``steps`` steps."""
    return SIGMA_MIN_RATIO * sigma_data * (5.0 / steps) ** math.log2(math.sqrt(10.0))


@functools.lru_cache(maxsize=64)
def _sigma_tilde_floor(schedule) -> float | None:
    """``sigma_tilde`` at the schedule's ``t_min``, or ``None`` if ``sigma(0) > 0``."""
    if float(schedule(torch.zeros(1, dtype=torch.float64)).sigma[0]) != 0.0:
        return None
    v = schedule(torch.tensor([schedule.t_min], dtype=torch.float64))
    return float(v.sigma[0] / v.alpha[0])


def check_sigma_data(sigma_data) -> float:
    """``sigma_data`` as a positive float (``None``: 1, standardised data)."""
    if sigma_data is None:
        return 1.0
    if isinstance(sigma_data, bool) or not isinstance(sigma_data, int | float):
        raise TypeError(f"sigma_data must be a number (the data's std), got {sigma_data!r}")
    if not (math.isfinite(sigma_data) and sigma_data > 0):
        raise ValueError(
            f"sigma_data must be a finite positive standard deviation of the data, got "
            f"{sigma_data!r} (pass None for standardised data)"
        )
    return float(sigma_data)


def default_grid(
    path,
    steps: int,
    spec: SamplerSpec,
    *,
    t_max: float | None = None,
    t_min: float | None = None,
    final_zero: bool = True,
    sigma_data: float | None = None,
    dim: int = 1,
) -> torch.Tensor:
    """The grid :func:`sample_path` uses when none is given: ``spec``'s spacing; for the
    exponential integrators on paths ending at ``sigma = 0`` (DDPM, VP, linear, ...) the
    log-SNR range rule above, scaled by ``sigma_data`` and the dimension ``dim`` of one sample
    (an explicit ``t_min`` switches the rule off)."""
    steps = spec.fixed_steps or steps
    dim = check_positive_int(dim, "dim")
    sd = check_sigma_data(sigma_data)
    floor = _sigma_tilde_floor(path.schedule)
    if spec.spacing != "log_snr" or floor is None or t_min is not None or not final_zero:
        return make_grid(path, steps, spec.spacing, t_max=t_max, t_min=t_min, final_zero=final_zero)
    kw = {"sigma_min": max(sigma_min_rule(steps, sd), floor)} if steps >= 2 else {}
    if steps >= 3:
        kw["sigma_max"] = sigma_max_rule(steps, sd, dim)
    try:
        return make_grid(path, steps, "log_snr", t_max=t_max, **kw)
    except ValueError:  # t_max below sigma_max's time: the plain range
        return make_grid(path, steps, "log_snr", t_max=t_max, sigma_min=kw.get("sigma_min"))


def range_rule_grid(
    path, steps: int, spec: SamplerSpec, sigma_data: float | None, dim: int
) -> torch.Tensor | None:
    """:func:`default_grid`'s range-rule grid when a trained model should use it, else ``None``.

    It applies when the data's ``sigma_data`` is known (a path model records it at fit), the
    sampler is deterministic with log-SNR spacing (the exponential integrators and DDIM, for
    which the rule was chosen: benchmarks/README.md) and the path ends at ``sigma = 0``.
    Otherwise (``None``) a model keeps its sampler's spacing over the path's whole range."""
    if sigma_data is None or not spec.deterministic or spec.spacing != "log_snr":
        return None
    if _sigma_tilde_floor(path.schedule) is None:
        return None
    return default_grid(path, steps, spec, sigma_data=sigma_data, dim=dim)


def get_sampler(name: str | SamplerSpec) -> SamplerSpec:
    """The :class:`~probpath.sampling.loop.SamplerSpec` called ``name`` (``ValueError`` listing
    the registered names otherwise); a spec itself is returned as it is."""
    if isinstance(name, SamplerSpec):  # a solver's own step (e.g. DDNM+), not registered
        return name
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
    sampler: str | SamplerSpec = "unipc",
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
    sigma_data: float | None = None,
    **options,
) -> SampleOutput:
    """Draw samples from ``field``: prior noise at ``t_max``, then ``sampler`` along a grid.

    Args:
        field: any :class:`~probpath.paths.field.Field`.
        shape: ``(n, *event_shape)``.
        sampler: a key of :data:`SAMPLER_SPECS` (default UniPC, order 3 with its corrector:
            the best default on bench_samplers' tuning seeds), or a solver's own
            :class:`~probpath.sampling.loop.SamplerSpec`.
        steps: number of steps (NFE is ``steps`` for 1-NFE samplers, see each sampler).
        grid: a spacing name (``"uniform"``, ``"log_snr"``, ``"edm"``, ``"quadratic"``), explicit
            decreasing times, or ``None``: :func:`default_grid` (the sampler's spacing; the
            log-SNR range rule for the exponential integrators).
        generator: for the prior draw and the samplers' noise.
        device, dtype: of the samples (default: the default dtype, CPU).
        x_init: start from this ``x`` at ``ts[0]`` instead of a prior draw.
        cond: conditioning passed to the field.
        t_min, final_zero: see :func:`~probpath.sampling.timesteps.make_grid`.
        clip_x0: ``(low, high)``: clamp every data prediction ``x0_hat`` to the data range
            (:class:`~probpath.paths.field.ClippedField`; diffusers' ``clip_sample``). Off by
            default; it keeps ODE samplers of short-trained eps-networks in range.
        sigma_data: the data's standard deviation, scaling :func:`default_grid`'s noise range
            (``None``: 1; a path model passes the value it recorded at fit).
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
        dim = math.prod(shape[1:])
        ts = default_grid(
            path, steps, spec, t_min=t_min, final_zero=final_zero, sigma_data=sigma_data, dim=dim
        )
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
