"""Log-likelihood through an ODE by the instantaneous change of variables (survey §3.2, Eq. 55).

For ``dx/dt = v(x, t)`` the log-density along a trajectory obeys
``d log p_t(x(t)) / dt = -tr(dv/dx)`` (Eq. 55), so, integrating from the data time ``t0`` to
the prior time ``t1``,

    log p_{t0}(x) = log p_{t1}(x(t1)) + int_{t0}^{t1} tr(dv/dx)(x(t), t) dt.

The trace is exact (``d`` backward passes — small ``d``) or Hutchinson's estimate
``E[z^T (dv/dx) z]`` with ``k`` Rademacher or Gaussian probes ``z`` drawn once from
``generator`` and held fixed along the trajectory (FFJORD). Used by every path model
(probability-flow ODE: :func:`field_log_prob`) and by the CNF (``differentiable=True`` keeps
the graph for maximum-likelihood training). Bits/dim: pass ``log_prob`` of uniformly
dequantised data to :func:`probpath.metrics.bits_per_dim`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from probpath.core.validation import check_choice, check_positive_int, check_tensor
from probpath.paths.field import Field
from probpath.sampling.integrate import integrate

__all__ = ["LikelihoodResult", "ode_log_prob", "field_log_prob", "divergence"]


@dataclass(frozen=True)
class LikelihoodResult:
    """Output of :func:`ode_log_prob` (tensors of shape ``(batch,)`` unless noted).

    Attributes:
        log_prob: ``log p_{t0}(x)``.
        prior_log_prob: ``log p_{t1}(x(t1))``.
        delta_log_prob: ``int tr(dv/dx) dt`` (so ``log_prob = prior_log_prob + delta``).
        z: ``x(t1)``, the latent, shaped like ``x``.
        nfe: number of evaluations of the velocity (each also costs the trace's backward
            passes: ``d`` for ``"exact"``, ``n_probes`` for ``"hutchinson"``).
        kinetic: ``int ||v||^2 dt`` (``None`` unless ``regularize=True``).
        jacobian_frobenius: ``int ||z^T dv/dx||^2 dt``, Hutchinson estimate of the Jacobian's
            squared Frobenius norm (``None`` unless ``regularize=True``).
    """

    log_prob: torch.Tensor
    prior_log_prob: torch.Tensor
    delta_log_prob: torch.Tensor
    z: torch.Tensor
    nfe: int
    kinetic: torch.Tensor | None = None
    jacobian_frobenius: torch.Tensor | None = None


def _probes(x, n_probes, noise, generator):
    shape = (n_probes,) + tuple(x.shape)
    if noise == "rademacher":
        z = torch.randint(0, 2, shape, generator=generator, device=x.device).to(x.dtype)
        return 2.0 * z - 1.0
    return torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)


def divergence(
    v: torch.Tensor,
    x: torch.Tensor,
    *,
    probes: torch.Tensor | None = None,
    create_graph: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``tr(dv/dx)`` per sample ``(batch,)`` for ``v = v(x)`` computed with autograd.

    Exact (one backward pass per dimension) when ``probes`` is ``None``; else the mean of
    ``z^T (dv/dx) z`` over ``probes`` ``(k, batch, *event)``. Also returns the probes' mean
    ``||z^T dv/dx||^2`` (``None`` for the exact trace).
    """
    if probes is None:
        flat_v = v.reshape(v.shape[0], -1)
        d = flat_v.shape[1]
        div = torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
        for j in range(d):
            (g,) = torch.autograd.grad(
                flat_v[:, j].sum(), x, create_graph=create_graph, retain_graph=True
            )
            div = div + g.reshape(g.shape[0], -1)[:, j]
        return div, None
    div, frob = 0.0, 0.0
    for z in probes:
        (g,) = torch.autograd.grad(v, x, z, create_graph=create_graph, retain_graph=True)
        div = div + (g * z).reshape(z.shape[0], -1).sum(1)
        frob = frob + (g * g).reshape(z.shape[0], -1).sum(1)
    k = probes.shape[0]
    return div / k, frob / k


def ode_log_prob(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    prior_log_prob: Callable[[torch.Tensor], torch.Tensor],
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    trace: str = "exact",
    n_probes: int = 1,
    noise: str = "rademacher",
    generator: torch.Generator | None = None,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
    differentiable: bool = False,
    regularize: bool = False,
) -> LikelihoodResult:
    """``log p_{t0}(x)`` of the flow ``dx/dt = velocity(x, t)`` with density ``prior`` at ``t1``.

    Args:
        velocity: ``velocity(x, t) -> dx/dt`` with ``x`` ``(batch, *event)`` and ``t``
            ``(batch,)`` in probpath's time (t = 0 data, t = 1 noise).
        x: data ``(batch, *event)``.
        prior_log_prob: ``log p_{t1}`` of a batch -> ``(batch,)``.
        t0, t1: data and prior times (``t0 < t1``).
        trace: ``"exact"`` or ``"hutchinson"``.
        n_probes, noise, generator: Hutchinson's probes (``"rademacher"`` or ``"gaussian"``).
        method, rtol, atol: torchdiffeq solver and tolerances (adaptive ``"dopri5"`` default).
        steps: if given, a fixed-step ``"rk4"`` solve with ``steps`` steps instead.
        differentiable: keep the autograd graph (CNF training); else the result is detached
            and computed without storing the solver's graph.
        regularize: also integrate the kinetic energy and the Jacobian Frobenius norm
            (RNODE, Finlay et al. 2020; needs ``trace="hutchinson"`` for the latter).

    Returns:
        :class:`LikelihoodResult`.
    """

    x = check_tensor(x, "x", min_ndim=1)
    check_choice(trace, "trace", ("exact", "hutchinson"))
    check_choice(noise, "noise", ("rademacher", "gaussian"))
    n_probes = check_positive_int(n_probes, "n_probes")
    if not t0 < t1:
        raise ValueError(f"need t0 < t1 (t0 data, t1 prior), got t0={t0}, t1={t1}")
    if steps is not None:
        steps = check_positive_int(steps, "steps")
    probes = _probes(x, n_probes, noise, generator) if trace == "hutchinson" else None
    batch = x.shape[0]
    nfe = [0]

    def rhs(t, state):
        y = state[0]
        with torch.enable_grad():
            if not y.requires_grad:
                y = y.detach().requires_grad_(True)
            tt = t.to(y.dtype).expand(batch)
            v = velocity(y, tt)
            nfe[0] += 1
            div, frob = divergence(v, y, probes=probes, create_graph=differentiable)
        out = [v, div]
        if regularize:
            kin = (v * v).reshape(batch, -1).sum(1)
            out += [kin, frob if frob is not None else torch.zeros_like(kin)]
        if not differentiable:
            out = [o.detach() for o in out]
        return tuple(out)

    zeros = torch.zeros(batch, dtype=x.dtype, device=x.device)
    state0 = (x, zeros) + ((zeros, zeros) if regularize else ())
    kwargs = {"method": method, "rtol": rtol, "atol": atol, "steps": steps}
    with contextlib.nullcontext() if differentiable else torch.no_grad():
        end = integrate(rhs, state0, float(t0), float(t1), **kwargs)
    z, delta = end[0], end[1]
    prior = prior_log_prob(z)
    return LikelihoodResult(
        log_prob=prior + delta,
        prior_log_prob=prior,
        delta_log_prob=delta,
        z=z,
        nfe=nfe[0],
        kinetic=end[2] if regularize else None,
        jacobian_frobenius=end[3] if regularize and trace == "hutchinson" else None,
    )


def field_log_prob(
    field: Field,
    x: torch.Tensor,
    *,
    t0: float | None = None,
    t1: float | None = None,
    cond=None,
    prior_log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None,
    **options,
) -> LikelihoodResult:
    """Probability-flow ODE log-likelihood of a field (survey §2.5 with Eq. 55).

    Integrates the field's velocity from ``t0`` (default ``path.t_min``: the VP family's
    velocity is singular at ``t = 0``) to ``t1`` (default ``path.t_max``); the prior is the
    path's ``N(0, sigma(t1)^2 I)`` unless ``prior_log_prob`` is given. The result is the
    density of ``x_{t0}``, which for small ``sigma(t0)`` approximates the data density.
    ``options`` go to :func:`ode_log_prob` (``trace``, ``n_probes``, ``rtol``, ``steps``...).
    """
    if not isinstance(field, Field):
        raise ValueError(f"field must be a probpath Field, got {type(field).__name__}")
    path = field.path
    t0 = path.t_min if t0 is None else float(t0)
    t1 = path.t_max if t1 is None else float(t1)
    prior = path.prior_log_prob if prior_log_prob is None else prior_log_prob
    return ode_log_prob(lambda y, t: field.velocity(y, t, cond), x, prior, t0=t0, t1=t1, **options)
