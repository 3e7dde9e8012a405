"""The one sampler loop and the :class:`SamplerSpec` every sampler is described by.

A sampler is a **step function** ``step(ctx, x, i) -> (x_next, x0_hat)`` that moves ``x`` from
grid time ``t_i`` to ``t_{i+1}`` (``sigma_{i+1} > 0``), plus a :class:`SamplerSpec` saying what
it costs and how it behaves. :func:`run_sampler` owns everything else, once:

* validation of the field, the start ``x_init``, the grid and the sampler's options (unknown
  names and bad values raise ``ValueError`` naming the option and the fix);
* the **final step to sigma = 0**: ODE coefficients (``sigma'``, the log-SNR) are singular
  there, so a grid ending at ``sigma = 0`` ends with the first-order denoising step
  ``x = alpha(0) x0_hat(x, t_last)`` (one NFE, no noise) unless the spec brings its own
  ``final`` rule (multistep solvers with history, predictor-corrector);
* the callback ``{"i", "t", "t_next", "x", "x0_hat"}`` after every step.

NFE are counted by :func:`~probpath.sampling.samplers.sample_path` (``count_nfe``), never
guessed; :meth:`SamplerSpec.nfe` is the formula the registry test checks against the count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from probpath.core.validation import check_tensor
from probpath.paths.field import Field
from probpath.paths.schedules import ScheduleValues
from probpath.sampling.timesteps import GridValues, check_grid

__all__ = ["SamplerSpec", "StepContext", "run_sampler", "denoise", "as_function"]


@dataclass
class StepContext:
    """What a step function sees: the field, the grid's schedule values, the options.

    ``state`` is per-run scratch space (a multistep solver's history); the context is built
    fresh by every :func:`run_sampler` call, so samplers stay stateless between calls.
    """

    field: Field
    g: GridValues
    options: Mapping[str, Any]
    cond: Any = None
    generator: torch.Generator | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Number of steps of the grid (``len(ts) - 1``)."""
        return len(self.g) - 1

    def x0_eps(self, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One NFE at grid point ``i``: ``(x0_hat, eps_hat)``."""
        t = torch.full((x.shape[0],), self.g.t[i], dtype=x.dtype, device=x.device)
        return self.field.x0_eps(x, t, self.cond, values=self.g[i])

    def at(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor, ScheduleValues]:
        """One NFE at an off-grid time ``t``: ``(x0_hat, eps_hat, values at t)``."""
        g = GridValues.from_path(self.field.path, [t])
        tt = torch.full((x.shape[0],), g.t[0], dtype=x.dtype, device=x.device)
        x0, eps = self.field.x0_eps(x, tt, self.cond, values=g[0])
        return x0, eps, g[0]

    def noise(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like ``like``, from the run's ``generator``."""
        return torch.randn(
            like.shape, generator=self.generator, dtype=like.dtype, device=like.device
        )


StepFn = Callable[[StepContext, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
OptionCheck = Callable[[Mapping[str, Any]], None]


def denoise(ctx: StepContext, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The final step to ``sigma = 0``: ``x = alpha(0) x0_hat(x, t_i)`` (1 NFE, first order)."""
    x0, _ = ctx.x0_eps(x, i)
    return ctx.g.alpha[i + 1] * x0, x0


def _one(options: Mapping[str, Any]) -> int:
    return 1


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler: its step function and what the loop, the CLI and the tests need to know.

    Attributes:
        name: registry key (``probpath sample RUN --sampler NAME``).
        step: ``step(ctx, x, i) -> (x_next, x0_hat)`` from ``t_i`` to ``t_{i+1}`` (sigma > 0).
        summary: one line for ``probpath info``.
        spacing: default grid spacing (a :data:`~probpath.sampling.timesteps.SPACINGS` name).
        order: convergence order of the deterministic solver in the step size (``None`` for
            samplers that are not fixed-order ODE solvers: SDE, Langevin, adaptive).
        deterministic: with its default options no noise is drawn (``generator`` then only
            affects the prior draw; DDIM's ``eta`` and EDM's ``churn`` add noise).
        options: option names and defaults (``MappingProxyType``; ``sample_path(**options)``).
        check: raises ``ValueError`` for a bad option value (after defaults are filled in).
        step_nfe: NFE of one step, as a function of the options.
        final: the step to ``sigma = 0`` (default :func:`denoise`).
        final_nfe: NFE of ``final``.
        last: a rule applied at the grid's last point when it has ``sigma > 0``
            (Langevin: the last noise level is visited too).
        needs_alpha: the first grid time must have ``alpha > 0`` (eps-form exponential
            integrators divide by ``alpha_s``; the reverse SDE's drift ``f = d log alpha / dt``);
            flow paths start such samplers just below ``t = 1``.
        fixed_steps: the default grid's number of steps regardless of ``steps`` (adaptive: 2,
            one solve to ``t_min`` and the final step).
    """

    name: str
    step: StepFn
    summary: str
    spacing: str = "log_snr"
    order: int | None = None
    deterministic: bool = True
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    check: OptionCheck | None = None
    step_nfe: Callable[[Mapping[str, Any]], int] = _one
    final: StepFn = denoise
    final_nfe: Callable[[Mapping[str, Any]], int] = _one
    last: StepFn | None = None
    needs_alpha: bool = False
    fixed_steps: int | None = None

    def resolve(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options with defaults filled in, validated (``ValueError`` naming the fix)."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise ValueError(
                f"sampler {self.name!r} takes no option(s) {', '.join(unknown)}; its options "
                f"are: {known}"
            )
        out = {**self.options, **options}
        if self.check is not None:
            self.check(out)
        return out

    def nfe(self, steps: int, *, final_zero: bool = True, **options: Any) -> int | None:
        """Network evaluations of a run with ``steps`` steps (``None``: adaptive).

        Every step but the last costs ``step_nfe``; the last costs ``final_nfe`` when it goes
        to ``sigma = 0``, else ``step_nfe`` (plus the ``last`` rule's evaluations, if any).
        """
        if self.fixed_steps is not None:
            return None
        opts = self.resolve(options)
        per, fin = self.step_nfe(opts), self.final_nfe(opts)
        if final_zero:
            return per * (steps - 1) + fin
        return per * steps + (per if self.last is not None else 0)


def _report(callback, i: int, g: GridValues, x: torch.Tensor, x0_hat: torch.Tensor) -> None:
    if callback is not None:
        callback({"i": i, "t": g.t[i], "t_next": g.t[i + 1], "x": x, "x0_hat": x0_hat})


def run_sampler(
    spec: SamplerSpec,
    field_: Field,
    x_init: torch.Tensor,
    ts,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    cond=None,
    **options: Any,
) -> torch.Tensor:
    """Run ``spec``'s step function along the decreasing grid ``ts`` from ``x_init`` at ``ts[0]``.

    Args:
        spec: the sampler.
        field_: any :class:`~probpath.paths.field.Field`.
        x_init: ``(batch, *event)`` floating start at ``ts[0]``.
        ts: strictly decreasing times in ``[0, 1]`` (at least two).
        generator: for the sampler's noise.
        callback: receives ``{"i", "t", "t_next", "x", "x0_hat"}`` after every step.
        cond: conditioning, passed on to ``field_.x0_eps(x, t, cond)``.
        **options: the sampler's options (:attr:`SamplerSpec.options`).

    Returns:
        ``x`` at ``ts[-1]``, shaped like ``x_init``.
    """
    opts = spec.resolve(options)
    if not isinstance(field_, Field):
        raise ValueError(
            f"field must be a probpath Field (wrap a callable with FunctionField), got "
            f"{type(field_).__name__}"
        )
    x = check_tensor(x_init, "x_init", min_ndim=1)
    if not x.is_floating_point():
        raise ValueError("x_init must be a floating-point tensor")
    ts = check_grid(ts)
    g = GridValues.from_path(field_.path, ts)
    ctx = StepContext(field_, g, MappingProxyType(opts), cond, generator)
    for i in range(len(g) - 1):
        rule = spec.final if g.sigma[i + 1] == 0.0 else spec.step
        x, x0_hat = rule(ctx, x, i)
        _report(callback, i, g, x, x0_hat)
    if spec.last is not None and g.sigma[-1] > 0.0:
        x, _ = spec.last(ctx, x, len(g) - 1)
    return x


def as_function(spec: SamplerSpec) -> Callable[..., torch.Tensor]:
    """``sample_<name>(field, x_init, ts, *, generator=None, callback=None, cond=None,
    **options) -> x``: :func:`run_sampler` bound to ``spec`` (the public sampler functions)."""

    def sample(field, x_init, ts, *, generator=None, callback=None, cond=None, **options):
        return run_sampler(
            spec, field, x_init, ts, generator=generator, callback=callback, cond=cond, **options
        )

    sample.__name__ = sample.__qualname__ = f"sample_{spec.name}"
    sample.__doc__ = f"{spec.summary}\n\nOptions (defaults): {dict(spec.options)}."
    sample.spec = spec  # type: ignore[attr-defined]
    return sample
