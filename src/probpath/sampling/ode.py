"""Probability-flow ODE samplers (survey §2.5, §3.3): Euler, Heun, RK4, adaptive, DPM-Solvers.

The probability-flow ODE of the path is ``dx/dt = d_alpha x0_hat + d_sigma eps_hat`` (the
velocity; for a score model it is ``f x - g^2 score / 2``, the drift of Eq. 43 without noise).
Euler / Heun / RK4 / dopri5 integrate it in ``t``. The single-step DPM-Solvers integrate its
exact semi-linear form in ``lambda = log(alpha / sigma)`` (Lu et al. 2022a):

    x_t = (alpha_t / alpha_s) x_s - alpha_t int_{lambda_s}^{lambda_t} e^{-lambda} eps_hat dlambda,

expanding ``eps_hat`` in ``lambda``. Each sampler is a step function plus a
:class:`~probpath.sampling.loop.SamplerSpec`; :func:`~probpath.sampling.loop.run_sampler` owns
the loop, the final step to ``sigma = 0`` and the callbacks. The multistep solvers
(DPM-Solver++, UniPC, DEIS) are in :mod:`probpath.sampling.multistep`.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import torch

from probpath.sampling.integrate import integrate
from probpath.sampling.loop import SamplerSpec, StepContext, as_function
from probpath.sampling.timesteps import GridValues

__all__ = [
    "sample_euler",
    "sample_heun",
    "sample_rk4",
    "sample_adaptive",
    "sample_dpm_solver_1",
    "sample_dpm_solver_2",
    "sample_dpm_solver_3",
    "SPECS",
]


def _velocity(x0, eps, v):
    return v.d_alpha * x0 + v.d_sigma * eps


# -- t-space Runge-Kutta -----------------------------------------------------------------------
def _rk_step(tableau):
    """Explicit Runge-Kutta step in ``t`` with Butcher ``tableau = (c, a, b)`` (coefficients are
    data, as in torchdiffeq's fixed-grid solvers)."""
    c, a, b = tableau

    def step(ctx: StepContext, x: torch.Tensor, i: int):
        g = ctx.g
        x0, eps = ctx.x0_eps(x, i)
        h = g.t[i + 1] - g.t[i]
        stages = [_velocity(x0, eps, g[i])]
        for j in range(1, len(c)):
            xs = x + h * sum(a[j][k] * stages[k] for k in range(j) if a[j][k] != 0.0)
            if c[j] == 1.0:
                ks = _velocity(*ctx.x0_eps(xs, i + 1), g[i + 1])
            else:
                ks = _velocity(*ctx.at(xs, g.t[i] + c[j] * h))
            stages.append(ks)
        return x + h * sum(bj * k for bj, k in zip(b, stages) if bj != 0.0), x0

    return step


_EULER = ((0.0,), ((),), (1.0,))
_HEUN = ((0.0, 1.0), ((), (1.0,)), (0.5, 0.5))
_RK4 = (
    (0.0, 0.5, 0.5, 1.0),
    ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    (1 / 6, 1 / 3, 1 / 3, 1 / 6),
)

EULER = SamplerSpec(
    "euler", _rk_step(_EULER), "Euler on the probability-flow ODE in t (order 1).", "uniform", 1
)
HEUN = SamplerSpec(
    "heun",
    _rk_step(_HEUN),
    "Heun (explicit trapezoid) in t, 2 NFE per step (order 2).",
    "uniform",
    2,
    step_nfe=lambda o: 2,
)
RK4 = SamplerSpec(
    "rk4",
    _rk_step(_RK4),
    "Classical Runge-Kutta 4 in t, 4 NFE per step (order 4).",
    "uniform",
    4,
    step_nfe=lambda o: 4,
)


# -- adaptive --------------------------------------------------------------------------------
def _adaptive_step(ctx: StepContext, x: torch.Tensor, i: int):
    """dopri5 (torchdiffeq) from ``t_i`` to ``t_{i+1}``; the solver picks its own steps and
    its last step ends exactly at ``t_{i+1}`` (no stage beyond it, where sigma -> 0)."""
    shape, field, cond = x.shape, ctx.field, ctx.cond

    def rhs(t, y):
        return field.velocity(y.reshape(shape), float(t), cond)

    o = ctx.options
    x = integrate(
        rhs, x, ctx.g.t[i], ctx.g.t[i + 1], method=o["method"], rtol=o["rtol"], atol=o["atol"]
    )
    return x, None


def _check_adaptive(o):
    if not (o["rtol"] > 0 and o["atol"] > 0):
        raise ValueError(f"rtol and atol must be > 0, got rtol={o['rtol']}, atol={o['atol']}")


ADAPTIVE = SamplerSpec(
    "adaptive",
    _adaptive_step,
    "Adaptive dopri5 solve of the probability-flow ODE (torchdiffeq; rtol, atol).",
    "uniform",
    None,
    options=MappingProxyType({"method": "dopri5", "rtol": 1e-5, "atol": 1e-5}),
    check=_check_adaptive,
    fixed_steps=2,  # one adaptive solve to t_min, then the final step to sigma = 0
)


# -- DPM-Solver (noise prediction, single-step) ------------------------------------------------
def _lambda_times(ctx: StepContext, i: int, fractions):
    """Schedule values at ``lambda_i + r h`` for each ``r`` in ``fractions`` (s_1, s_2)."""
    g = ctx.g
    lam, h = g.lam[i], g.lam[i + 1] - g.lam[i]
    lams = torch.tensor([2.0 * (lam + r * h) for r in fractions], dtype=torch.float64)
    path = ctx.field.path
    return GridValues.from_path(path, path.t_from_log_snr(lams))


def _dpm_solver_step(order: int):
    """DPM-Solver-``order`` (Lu et al. 2022a, Eq. 3.7 and Algs. 1-2): 1, 2 or 3 NFE per step."""

    def step(ctx: StepContext, x: torch.Tensor, i: int):
        g = ctx.g
        x0, eps = ctx.x0_eps(x, i)
        a, a_n, s_n = g.alpha[i], g.alpha[i + 1], g.sigma[i + 1]
        h = g.lam[i + 1] - g.lam[i]
        e1 = math.expm1(h)
        if order == 1:  # = DDIM (eta = 0)
            return (a_n / a) * x - s_n * e1 * eps, x0
        if order == 2:  # Alg. 1 with r1 = 1/2
            mid = _lambda_times(ctx, i, (0.5,))
            u = (mid.alpha[0] / a) * x - mid.sigma[0] * math.expm1(0.5 * h) * eps
            d1 = _eps_at(ctx, u, mid, 0) - eps
            return (a_n / a) * x - s_n * e1 * eps - s_n * e1 * d1, x0  # 1 / (2 r1) = 1
        r1, r2 = 1.0 / 3.0, 2.0 / 3.0  # Alg. 2
        mid = _lambda_times(ctx, i, (r1, r2))
        u1 = (mid.alpha[0] / a) * x - mid.sigma[0] * math.expm1(r1 * h) * eps
        d1 = _eps_at(ctx, u1, mid, 0) - eps
        phi = math.expm1(r2 * h) / (r2 * h) - 1.0
        u2 = (
            (mid.alpha[1] / a) * x
            - mid.sigma[1] * math.expm1(r2 * h) * eps
            - mid.sigma[1] * (r2 / r1) * phi * d1
        )
        d2 = _eps_at(ctx, u2, mid, 1) - eps
        return (a_n / a) * x - s_n * e1 * eps - (s_n / r2) * (e1 / h - 1.0) * d2, x0

    return step


def _eps_at(ctx: StepContext, x: torch.Tensor, g: GridValues, j: int) -> torch.Tensor:
    t = torch.full((x.shape[0],), g.t[j], dtype=x.dtype, device=x.device)
    return ctx.field.x0_eps(x, t, ctx.cond, values=g[j])[1]


DPM_SOLVER_1 = SamplerSpec(
    "dpm_solver_1",
    _dpm_solver_step(1),
    "DPM-Solver-1 (Lu et al. 2022a): exact linear part, eps_hat constant (= DDIM eta=0).",
    order=1,
    needs_alpha=True,
)
DPM_SOLVER_2 = SamplerSpec(
    "dpm_solver_2",
    _dpm_solver_step(2),
    "DPM-Solver-2, single-step, midpoint in lambda, 2 NFE per step (order 2).",
    order=2,
    step_nfe=lambda o: 2,
    needs_alpha=True,
)
DPM_SOLVER_3 = SamplerSpec(
    "dpm_solver_3",
    _dpm_solver_step(3),
    "DPM-Solver-3, single-step (r1 = 1/3, r2 = 2/3), 3 NFE per step (order 3).",
    order=3,
    step_nfe=lambda o: 3,
    needs_alpha=True,
)

SPECS = (EULER, HEUN, RK4, ADAPTIVE, DPM_SOLVER_1, DPM_SOLVER_2, DPM_SOLVER_3)

sample_euler = as_function(EULER)
sample_heun = as_function(HEUN)
sample_rk4 = as_function(RK4)
sample_adaptive = as_function(ADAPTIVE)
sample_dpm_solver_1 = as_function(DPM_SOLVER_1)
sample_dpm_solver_2 = as_function(DPM_SOLVER_2)
sample_dpm_solver_3 = as_function(DPM_SOLVER_3)
