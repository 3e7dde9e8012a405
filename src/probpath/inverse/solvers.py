"""Diffusion posterior sampling for linear inverse problems: DPS, ΠGDM, DDNM / DDNM+.

Each solver is a field transform (:mod:`probpath.sampling.guidance`) run by the shared
:func:`~probpath.sampling.samplers.sample_path` loop, so it works with any trained path model
or field, any sampler and any prediction kind, and its NFE is counted:

* **DPS** (Chung et al. 2023, "Diffusion posterior sampling for general noisy inverse
  problems", Alg. 1): ``grad log p(y | x_t) ~ -zeta_t grad_x ||y - A x0_hat(x_t)||^2`` with
  ``zeta_t = zeta / ||y - A x0_hat||``, added to the score (one backward pass per NFE).
* **ΠGDM** (Song et al. 2023, "Pseudoinverse-guided diffusion models for inverse problems",
  Eq. 7-8): ``p(x0 | x_t) ~ N(x0_hat, r_t^2 I)`` gives
  ``grad log p(y | x_t) ~ ((y - A x0_hat)^T (r_t^2 A A^T + sigma_y^2 I)^{-1} A d x0_hat / d x_t)^T``
  with ``r_t^2 = sigma_tilde^2 / (1 + sigma_tilde^2)``, ``sigma_tilde = sigma_t / alpha_t``.
* **DDNM** (Wang et al. 2023, "Zero-shot image restoration using denoising diffusion null-space
  model", Eq. 13): replace the range-space part of ``x0_hat`` by the measurement,
  ``x0_hat <- A^+ y + (I - A^+ A) x0_hat``, inside the DDIM step
  ``x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z`` (``eta = 1``: ancestral;
  their reference code's form, with the network's ``eps_hat``: the posterior-mean form
  ``q(x_s | x_t, x0_hat)`` of their Alg. 1 is 1.4 instead of 0.08 sliced W2 from the exact
  posterior on the 16-D inpainting oracle). **DDNM+** (their §3.3, Eq. 17-19) for noisy
  ``y``: along the singular pair ``(u_i, s_i, v_i)`` of ``A`` the correction carries noise of
  std ``alpha_s sigma_y / s_i`` into ``x_s``; it is scaled by ``lambda_i = min(1, sigma_s s_i
  / (alpha_s sigma_y))`` and the step's noise along ``v_i`` is scaled by
  ``gamma_i = sqrt(sigma_s^2 - (lambda_i alpha_s sigma_y / s_i)^2) / sigma_s`` (the reduced
  re-noising) so that the total stays ``sigma_s``.
  Optional time travel (their §3.3, "time-travel trick"): every ``travel_length`` steps jump
  back ``travel_length`` steps by the forward process and redo them, ``travel_repeat``
  times.

Functions :func:`dps`, :func:`pigdm`, :func:`ddnm` take a field (or a
:class:`~probpath.sampling.path_model.PathModel`), an operator and observations ``y`` with
one row per sample, and return :class:`~probpath.sampling.samplers.SampleOutput`.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

import torch

from probpath.core.broadcast import append_dims
from probpath.inverse.operators import LinearOperator
from probpath.paths.field import Field, _batch_t
from probpath.sampling.guidance import ScoreShift
from probpath.sampling.loop import SamplerSpec, StepContext
from probpath.sampling.samplers import SampleOutput, sample_path
from probpath.sampling.sde import _check_eta, _posterior

__all__ = ["DPSField", "PiGDMField", "DDNMField", "dps", "pigdm", "ddnm", "SOLVERS", "solve"]


def _residual(op: LinearOperator, y: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor:
    """``y - A x0_hat`` flattened to ``(batch, m)``."""
    return (y - op.forward(x0_hat)).reshape(len(y), -1)


class DPSField(ScoreShift):
    """DPS's likelihood score added to ``field`` (see the module docstring)."""

    def __init__(self, field: Field, operator: LinearOperator, y: torch.Tensor, zeta: float):
        super().__init__(field)
        self.op, self.y, self.zeta = operator, y, float(zeta)

    def shift(self, x, t, cond, x0_hat):
        r = _residual(self.op, self.y.to(x0_hat), x0_hat)
        norm = r.norm(dim=1)
        (grad,) = torch.autograd.grad((norm * norm).sum(), x)
        step = self.zeta / norm.detach().clamp_min(1e-12)
        return -append_dims(step, grad) * grad


class PiGDMField(ScoreShift):
    """ΠGDM's likelihood score added to ``field`` (see the module docstring)."""

    def __init__(self, field: Field, operator: LinearOperator, y: torch.Tensor, scale: float):
        super().__init__(field)
        self.op, self.y, self.scale = operator, y, float(scale)

    def shift(self, x, t, cond, x0_hat):
        v = self.path(_batch_t(t, x))
        s2 = (v.sigma / v.alpha.clamp_min(1e-12)) ** 2
        r2 = s2 / (1.0 + s2)
        u = self.op.solve_gram(_residual(self.op, self.y.to(x0_hat), x0_hat).detach(), r2)
        a_x0 = self.op.forward(x0_hat).reshape(len(x), -1)
        (grad,) = torch.autograd.grad((u * a_x0).sum(), x)
        return self.scale * grad


class DDNMField(Field):
    """``field`` with DDNM's range-null-space correction of ``x0_hat`` (``eps_hat`` kept), for
    noiseless ``y`` with any sampler; :func:`ddnm` runs the paper's own step (and DDNM+)."""

    def __init__(self, field: Field, operator: LinearOperator, y: torch.Tensor):
        super().__init__(field.path, field.prediction)
        if operator.sigma_y > 0.0:
            raise ValueError("DDNMField is for noiseless y (sigma_y = 0); use ddnm() (DDNM+)")
        self.field, self.op, self.y = field, operator, y

    def x0_eps(self, x, t, cond=None, *, values=None):
        x0_hat, eps_hat = self.field.x0_eps(x, t, cond, values=values)
        return x0_hat - self.op.pinv(self.op.forward(x0_hat) - self.y.to(x0_hat)), eps_hat

    def evaluate(self, x, t, cond=None):
        raise NotImplementedError("DDNM corrects (x0_hat, eps_hat); samplers call x0_eps")


def _ddnm_update(
    op: LinearOperator,
    y: torch.Tensor,
    x0_hat: torch.Tensor,
    noise: torch.Tensor,
    alpha_s: float,
    sigma_s: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DDNM / DDNM+ on one DDIM step ``x_s = alpha_s x0_hat + noise`` (``noise`` of std
    ``sigma_s``): the corrected ``x0_hat`` and the noise, reduced along ``A``'s range where
    ``y``'s own noise takes its place (see the module docstring).

    Returns:
        ``(x0_corrected, noise)``, both shaped like ``x0_hat``.
    """
    residual = op.forward(x0_hat) - y.to(x0_hat)
    if op.sigma_y == 0.0:
        return x0_hat - op.pinv(residual), noise
    u, s, v = (m.to(x0_hat) for m in op.svd())
    keep = s > 1e-12 * s.max()
    s_safe = torch.where(keep, s, torch.ones_like(s))
    carried = alpha_s * op.sigma_y / s_safe  # std that y's noise brings into x_s along v_i
    lam = torch.where(keep, (sigma_s / carried.clamp_min(1e-300)).clamp(max=1.0), 0.0)
    coef = residual.reshape(len(x0_hat), -1) @ u  # (B, k)
    x0 = x0_hat - ((coef * lam / s_safe) @ v.T).reshape(x0_hat.shape)
    if sigma_s == 0.0:
        return x0, noise
    gamma = (sigma_s**2 - (lam * carried) ** 2).clamp_min(0.0).sqrt() / sigma_s  # (k,)
    nf = noise.reshape(len(noise), -1)
    return x0, (nf + ((nf @ v) * (gamma - 1.0)) @ v.T).reshape(x0.shape)


def _ddnm_spec(op: LinearOperator, y: torch.Tensor, travel_length: int, travel_repeat: int):
    """The DDNM / DDNM+ sampler for ``(op, y)``: a DDIM step (``eta``, default 1) with the
    correction; time travel every ``travel_length`` steps (0: none)."""

    def step(ctx: StepContext, x: torch.Tensor, i: int):
        g = ctx.g
        x0, eps = ctx.x0_eps(x, i)
        s_n = g.sigma[i + 1]
        _, var_ts = _posterior(g, i)
        c = min(ctx.options["eta"] * math.sqrt(var_ts * s_n**2 / g.sigma[i] ** 2), s_n)
        noise = math.sqrt(max(s_n**2 - c * c, 0.0)) * eps
        if c > 0.0:
            noise = noise + c * ctx.noise(x)
        x0, noise = _ddnm_update(op, y, x0, noise, g.alpha[i + 1], s_n)
        return g.alpha[i + 1] * x0 + noise, x0

    def travel_step(ctx: StepContext, x: torch.Tensor, i: int):
        x, x0 = step(ctx, x, i)
        j, g = i + 1 - travel_length, ctx.g
        if travel_length > 0 and (i + 1) % travel_length == 0 and j >= 0 and g.sigma[i + 1] > 0:
            for _ in range(travel_repeat):  # x_{t_j} ~ q(x_{t_j} | x_{t_{i+1}}), then redo
                a = g.alpha[j] / g.alpha[i + 1]
                std = math.sqrt(max(g.sigma[j] ** 2 - (a * g.sigma[i + 1]) ** 2, 0.0))
                x = a * x + std * ctx.noise(x)
                for k in range(j, i + 1):
                    x, x0 = step(ctx, x, k)
        return x, x0

    return SamplerSpec(
        "ddnm",
        travel_step,
        "DDNM / DDNM+ (Wang et al. 2023): DDIM steps with the range-null-space correction.",
        deterministic=False,
        options=MappingProxyType({"eta": 1.0}),
        check=_check_eta,
        final=step,
    )


def _solve(
    make_field,
    model_or_field,
    operator: LinearOperator,
    y,
    *,
    sampler: str | SamplerSpec = "ddim",
    steps: int = 100,
    cond=None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> SampleOutput:
    """Wrap the model's field with ``make_field(field, operator, y)`` and sample it.

    Args (shared by :func:`dps`, :func:`pigdm`, :func:`ddnm`):
        model_or_field: a path model (its field and grid defaults) or any field.
        operator: the measurement operator; y: the observations ``(n, *obs)``, one draw of
            ``x | y`` per row.
        sampler, steps: the shared sampler (default DDIM with ``eta = 1``: ancestral).
        cond: labels for a conditional model; generator: the sampler's noise.
        **options: more sampler options (e.g. ``clip_x0``).
    """
    if not isinstance(operator, LinearOperator):
        raise ValueError(f"operator must be a LinearOperator, got {type(operator).__name__}")
    y = torch.as_tensor(y)
    if y.ndim < 2 or not y.is_floating_point():
        raise ValueError("y must be float observations with one row per sample, (n, *obs)")
    field = getattr(model_or_field, "field", model_or_field)
    if not isinstance(field, Field):
        raise ValueError(f"expected a path model or a Field, got {type(model_or_field).__name__}")
    opts: dict[str, Any] = {"eta": 1.0} if sampler == "ddim" else {}  # ancestral DDIM
    if hasattr(model_or_field, "grid_defaults"):
        opts.update(model_or_field.grid_defaults(sampler, steps))
    opts.update(options)
    return sample_path(
        make_field(field, operator, y),
        (len(y), *operator.event_shape),
        sampler=sampler,
        steps=steps,
        generator=generator,
        device=y.device,
        dtype=getattr(model_or_field, "dtype", y.dtype),
        cond=cond,
        **opts,
    )


def dps(model_or_field, operator: LinearOperator, y, *, zeta: float = 3.0, **options):
    """Diffusion posterior sampling (Chung et al. 2023, Alg. 1) with step size ``zeta``
    (``zeta_t = zeta / ||y - A x0_hat||``; the default 3 was the best of 0.01-10 on the seed-0
    problems of ``benchmarks/bench_inverse.py --part tune-dps``); other arguments: see
    :func:`_solve`.

    Returns:
        :class:`~probpath.sampling.samplers.SampleOutput` (samples ``(n, *event)``, NFE).
    """
    return _solve(
        lambda f, op, obs: DPSField(f, op, obs, zeta), model_or_field, operator, y, **options
    )


def pigdm(model_or_field, operator: LinearOperator, y, *, scale: float = 1.0, **options):
    """Pseudoinverse-guided sampling (Song et al. 2023), guidance multiplied by ``scale``;
    other arguments and the output as :func:`dps`."""
    return _solve(
        lambda f, op, obs: PiGDMField(f, op, obs, scale), model_or_field, operator, y, **options
    )


def ddnm(
    model_or_field,
    operator: LinearOperator,
    y,
    *,
    travel_length: int = 0,
    travel_repeat: int = 1,
    **options,
):
    """DDNM (noiseless ``y``) / DDNM+ (``sigma_y > 0``) of Wang et al. 2023 on its own
    ancestral step (see the module docstring); other arguments and the output as :func:`dps`
    (``sampler`` excepted: for noiseless ``y`` under another sampler wrap the field in
    :class:`DDNMField`).

    Args:
        travel_length: time travel every this many steps, back as many (0: off).
        travel_repeat: how often each travel is repeated (each costs ``travel_length`` NFE).

    With ``sigma_y = 0`` the final sample satisfies ``A x = y`` up to round-off: the last
    step returns the corrected ``x0_hat`` at ``sigma = 0``.
    """
    if "sampler" in options:
        raise ValueError(
            "ddnm runs its own ancestral step (Wang et al. 2023, Alg. 1); drop sampler=, or "
            "wrap the field in DDNMField and call sample_path for another sampler"
        )
    if not isinstance(travel_length, int) or travel_length < 0:
        raise ValueError(f"travel_length must be an integer >= 0, got {travel_length!r}")
    if not isinstance(travel_repeat, int) or travel_repeat < 1:
        raise ValueError(f"travel_repeat must be an integer >= 1, got {travel_repeat!r}")
    y_obs = torch.as_tensor(y)  # _solve checks operator and y before any step runs
    spec = _ddnm_spec(operator, y_obs, travel_length, travel_repeat)
    return _solve(lambda f, op, obs: f, model_or_field, operator, y_obs, sampler=spec, **options)


SOLVERS = {"dps": dps, "pigdm": pigdm, "ddnm": ddnm}


def solve(method: str, model_or_field, operator: LinearOperator, y, **options) -> SampleOutput:
    """Run the solver called ``method`` (a key of :data:`SOLVERS`)."""
    if method not in SOLVERS:
        raise ValueError(f"method must be one of {', '.join(map(repr, SOLVERS))}; got {method!r}")
    return SOLVERS[method](model_or_field, operator, y, **options)
