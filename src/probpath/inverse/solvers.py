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
  ``x0_hat <- A^+ y + (I - A^+ A) x0_hat``; **DDNM+** (their §3.3) for noisy ``y`` scales the
  correction along each singular pair of ``A`` by ``lambda_i = min(1, sigma_tilde_t s_i /
  sigma_y)`` (without their reduced re-noising ``Phi_t`` and time travel: the sampler keeps
  its own noise).

Functions :func:`dps`, :func:`pigdm`, :func:`ddnm` take a field (or a
:class:`~probpath.sampling.path_model.PathModel`), an operator and observations ``y`` with
one row per sample, and return :class:`~probpath.sampling.samplers.SampleOutput`.
"""

from __future__ import annotations

from typing import Any

import torch

from probpath.core.broadcast import append_dims
from probpath.inverse.operators import LinearOperator
from probpath.paths.field import Field, _batch_t
from probpath.sampling.guidance import ScoreShift
from probpath.sampling.samplers import SampleOutput, sample_path

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
    """``field`` with DDNM's range-null-space correction of ``x0_hat`` (``eps_hat`` kept)."""

    def __init__(self, field: Field, operator: LinearOperator, y: torch.Tensor):
        super().__init__(field.path, field.prediction)
        self.field, self.op, self.y = field, operator, y

    def x0_eps(self, x, t, cond=None, *, values=None):
        t = _batch_t(t, x)
        if values is None:
            values = self.path(t)
        x0_hat, eps_hat = self.field.x0_eps(x, t, cond, values=values)
        residual = self.op.forward(x0_hat) - self.y.to(x0_hat)
        if self.op.sigma_y == 0.0:
            return x0_hat - self.op.pinv(residual), eps_hat
        # DDNM+ (Wang et al. 2023, §3.3) in A's SVD: along singular pair i the pseudo-inverse
        # carries noise of std sigma_y / s_i into x0_hat; scale its correction by
        # lambda_i = min(1, sigma_tilde_t s_i / sigma_y) so that noise stays below the
        # sampler's current level sigma_tilde_t = sigma_t / alpha_t
        u, s, v = (m.to(x0_hat) for m in self.op.svd())
        alpha = torch.as_tensor(values.alpha, dtype=x.dtype).clamp_min(1e-12)
        level = (torch.as_tensor(values.sigma, dtype=x.dtype) / alpha).reshape(-1, 1)
        keep = s > 1e-12 * s.max()
        lam = (level * s / self.op.sigma_y).clamp(max=1.0)
        gain = torch.where(keep, lam / torch.where(keep, s, torch.ones_like(s)), 0.0)
        coef = residual.reshape(len(x), -1) @ u  # (B, k)
        correction = ((coef * gain) @ v.T).reshape(x0_hat.shape)
        return x0_hat - correction, eps_hat

    def evaluate(self, x, t, cond=None):
        raise NotImplementedError("DDNM corrects (x0_hat, eps_hat); samplers call x0_eps")


def _solve(
    make_field,
    model_or_field,
    operator: LinearOperator,
    y,
    *,
    sampler: str = "ddim",
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


def dps(model_or_field, operator: LinearOperator, y, *, zeta: float = 1.0, **options):
    """Diffusion posterior sampling (Chung et al. 2023, Alg. 1) with step size ``zeta``
    (``zeta_t = zeta / ||y - A x0_hat||``); other arguments: see :func:`_solve`.

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


def ddnm(model_or_field, operator: LinearOperator, y, **options):
    """DDNM (noiseless ``y``) / DDNM+ (``sigma_y > 0``) of Wang et al. 2023; arguments and
    output as :func:`dps`.

    With ``sigma_y = 0`` the final sample satisfies ``A x = y`` up to round-off: the last
    step returns the corrected ``x0_hat`` at ``sigma = 0``.
    """
    return _solve(DDNMField, model_or_field, operator, y, **options)


SOLVERS = {"dps": dps, "pigdm": pigdm, "ddnm": ddnm}


def solve(method: str, model_or_field, operator: LinearOperator, y, **options) -> SampleOutput:
    """Run the solver called ``method`` (a key of :data:`SOLVERS`)."""
    if method not in SOLVERS:
        raise ValueError(f"method must be one of {', '.join(map(repr, SOLVERS))}; got {method!r}")
    return SOLVERS[method](model_or_field, operator, y, **options)
