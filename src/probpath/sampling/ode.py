"""Probability-flow ODE samplers (survey §2.5, §3.3): Euler, Heun, RK4, adaptive, DPM-Solvers.

The probability-flow ODE of the path is ``dx/dt = d_alpha x0_hat + d_sigma eps_hat`` (the
velocity; for a score model it is ``f x - g^2 score / 2``, the drift of Eq. 43 without noise).
Euler / Heun / RK4 / dopri5 integrate it in ``t``. The DPM-Solvers integrate its exact
semi-linear form in ``lambda = log(alpha / sigma)`` (Lu et al. 2022a, 2022b):

    x_t = (alpha_t / alpha_s) x_s - alpha_t int_{lambda_s}^{lambda_t} e^{-lambda} eps_hat dlambda
        = (sigma_t / sigma_s) x_s + sigma_t int_{lambda_s}^{lambda_t} e^{lambda} x0_hat dlambda,

expanding ``eps_hat`` (noise form, DPM-Solver) or ``x0_hat`` (data form, DPM-Solver++) in
``lambda``. Every sampler has the signature
``sample_<name>(field, x_init, ts, *, generator=None, callback=None, cond=None) -> x`` and
takes the explicit first-order denoising step on a step to ``sigma = 0`` (see
:mod:`probpath.sampling.timesteps`).
"""

from __future__ import annotations

import math

import torch

from probpath.core.validation import check_tensor
from probpath.paths.field import Field
from probpath.sampling.integrate import integrate
from probpath.sampling.timesteps import GridValues, check_grid

__all__ = [
    "sample_euler",
    "sample_heun",
    "sample_rk4",
    "sample_adaptive",
    "sample_dpm_solver_1",
    "sample_dpm_solver_2",
    "sample_dpm_solver_3",
    "sample_dpmpp_2m",
    "sample_dpmpp_3m",
]


# -- shared pieces ---------------------------------------------------------------------------
def setup(field: Field, x_init, ts) -> tuple[torch.Tensor, torch.Tensor, GridValues]:
    """Validate the inputs of a sampler; return ``x``, the grid and its schedule values."""
    if not isinstance(field, Field):
        raise ValueError(
            f"field must be a probpath Field (wrap a callable with FunctionField), got "
            f"{type(field).__name__}"
        )
    x = check_tensor(x_init, "x_init", min_ndim=1)
    if not x.is_floating_point():
        raise ValueError("x_init must be a floating-point tensor")
    ts = check_grid(ts)
    return x, ts, GridValues.from_path(field.path, ts)


def x0_eps(field: Field, x: torch.Tensor, g: GridValues, i: int, cond=None):
    """One NFE at grid point ``i``: ``(x0_hat, eps_hat)``."""
    t = torch.full((x.shape[0],), g.t[i], dtype=x.dtype, device=x.device)
    return field.x0_eps(x, t, cond, values=g[i])


def at_time(field: Field, x: torch.Tensor, t: float, cond=None):
    """One NFE at an off-grid time ``t``: ``(x0_hat, eps_hat, ScheduleValues)``."""
    g = GridValues.from_path(field.path, [t])
    x0, eps = x0_eps(field, x, g, 0, cond)
    return x0, eps, g[0]


def report(callback, i, g, x, x0_hat):
    if callback is not None:
        callback({"i": i, "t": g.t[i], "t_next": g.t[i + 1], "x": x, "x0_hat": x0_hat})


def _velocity(x0, eps, v):
    return v.d_alpha * x0 + v.d_sigma * eps


# -- t-space Runge-Kutta -----------------------------------------------------------------------
def _rk_sampler(field, x_init, ts, tableau, callback, cond):
    """Explicit Runge-Kutta in ``t`` with Butcher ``tableau = (c, a, b)``; the loop is here."""
    x, ts, g = setup(field, x_init, ts)
    c, a, b = tableau
    for i in range(len(g) - 1):
        x0, eps = x0_eps(field, x, g, i, cond)
        if g.sigma[i + 1] == 0.0:  # explicit final step to sigma = 0
            x = g.alpha[i + 1] * x0
        else:
            h = g.t[i + 1] - g.t[i]
            stages = [_velocity(x0, eps, g[i])]
            for j in range(1, len(c)):
                xs = x + h * sum(a[j][k] * stages[k] for k in range(j) if a[j][k] != 0.0)
                if c[j] == 1.0:
                    ks = _velocity(*x0_eps(field, xs, g, i + 1, cond), g[i + 1])
                else:
                    s0, s1, v = at_time(field, xs, g.t[i] + c[j] * h, cond)
                    ks = _velocity(s0, s1, v)
                stages.append(ks)
            x = x + h * sum(bj * k for bj, k in zip(b, stages) if bj != 0.0)
        report(callback, i, g, x, x0)
    return x


_EULER = ((0.0,), ((),), (1.0,))
_HEUN = ((0.0, 1.0), ((), (1.0,)), (0.5, 0.5))
_RK4 = (
    (0.0, 0.5, 0.5, 1.0),
    ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    (1 / 6, 1 / 3, 1 / 3, 1 / 6),
)


def sample_euler(field, x_init, ts, *, generator=None, callback=None, cond=None):
    """Euler on the probability-flow ODE in ``t`` (1 NFE per step, order 1)."""
    return _rk_sampler(field, x_init, ts, _EULER, callback, cond)


def sample_heun(field, x_init, ts, *, generator=None, callback=None, cond=None):
    """Heun (explicit trapezoid) in ``t`` (2 NFE per step, order 2)."""
    return _rk_sampler(field, x_init, ts, _HEUN, callback, cond)


def sample_rk4(field, x_init, ts, *, generator=None, callback=None, cond=None):
    """Classical Runge-Kutta 4 in ``t`` (4 NFE per step, order 4)."""
    return _rk_sampler(field, x_init, ts, _RK4, callback, cond)


def sample_adaptive(
    field,
    x_init,
    ts,
    *,
    generator=None,
    callback=None,
    cond=None,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
):
    """Adaptive solve of the probability-flow ODE with torchdiffeq (``dopri5``, ``rtol/atol``).

    Only the first and last network times of ``ts`` matter (plus the explicit final step to
    ``sigma = 0`` when ``ts`` ends there); the solver picks its own steps.
    """
    x, ts, g = setup(field, x_init, ts)
    last = len(g) - 2 if g.sigma[-1] == 0.0 else len(g) - 1
    if last > 0:
        shape = x.shape

        def rhs(t, y):
            y = y.reshape(shape)
            return field.velocity(y, float(t), cond)

        # the last adaptive step ends exactly at t_min (no stage beyond it, where sigma -> 0)
        x = integrate(rhs, x, float(g.t[0]), float(g.t[last]), method=method, rtol=rtol, atol=atol)
    if last < len(g) - 1:
        x0, _ = x0_eps(field, x, g, last, cond)
        x = g.alpha[-1] * x0
        report(callback, last, g, x, x0)
    return x


# -- DPM-Solver (noise prediction, single-step) ------------------------------------------------
def _lambda_times(field, g, i, fractions):
    """Times at ``lambda_i + r h`` for each ``r`` in ``fractions`` (DPM-Solver's s_1, s_2)."""
    lam, h = g.lam[i], g.lam[i + 1] - g.lam[i]
    lams = torch.tensor([2.0 * (lam + r * h) for r in fractions], dtype=torch.float64)
    return GridValues.from_path(field.path, field.path.t_from_log_snr(lams)), h


def _dpm_solver(field, x_init, ts, order, callback, cond):
    x, ts, g = setup(field, x_init, ts)
    for i in range(len(g) - 1):
        x0, eps = x0_eps(field, x, g, i, cond)
        a, a_n, s_n = g.alpha[i], g.alpha[i + 1], g.sigma[i + 1]
        if s_n == 0.0:
            x = a_n * x0
            report(callback, i, g, x, x0)
            continue
        h = g.lam[i + 1] - g.lam[i]
        e1 = math.expm1(h)
        if order == 1:  # = DDIM (eta = 0)
            x_new = (a_n / a) * x - s_n * e1 * eps
        elif order == 2:  # Lu et al. 2022a, Alg. 1 (r1 = 1/2)
            mid, _ = _lambda_times(field, g, i, (0.5,))
            u = (mid.alpha[0] / a) * x - mid.sigma[0] * math.expm1(0.5 * h) * eps
            d1 = x0_eps(field, u, mid, 0, cond)[1] - eps
            x_new = (a_n / a) * x - s_n * e1 * eps - s_n * e1 * d1  # 1 / (2 r1) = 1
        else:  # order 3, Lu et al. 2022a, Alg. 2 (r1 = 1/3, r2 = 2/3)
            r1, r2 = 1.0 / 3.0, 2.0 / 3.0
            mid, _ = _lambda_times(field, g, i, (r1, r2))
            u1 = (mid.alpha[0] / a) * x - mid.sigma[0] * math.expm1(r1 * h) * eps
            d1 = x0_eps(field, u1, mid, 0, cond)[1] - eps
            phi = math.expm1(r2 * h) / (r2 * h) - 1.0
            u2 = (
                (mid.alpha[1] / a) * x
                - mid.sigma[1] * math.expm1(r2 * h) * eps
                - mid.sigma[1] * (r2 / r1) * phi * d1
            )
            d2 = x0_eps(field, u2, mid, 1, cond)[1] - eps
            x_new = (a_n / a) * x - s_n * e1 * eps - (s_n / r2) * (e1 / h - 1.0) * d2
        x = x_new
        report(callback, i, g, x, x0)
    return x


def sample_dpm_solver_1(field, x_init, ts, *, generator=None, callback=None, cond=None):
    """DPM-Solver-1 (Lu et al. 2022a, Eq. 3.7): exact linear part, ``eps_hat`` held constant.

    Identical to DDIM with ``eta = 0``. 1 NFE per step, order 1.
    """
    return _dpm_solver(field, x_init, ts, 1, callback, cond)


def sample_dpm_solver_2(field, x_init, ts, *, generator=None, callback=None, cond=None):
    """DPM-Solver-2, single-step, midpoint in ``lambda`` (2 NFE per step, order 2)."""
    return _dpm_solver(field, x_init, ts, 2, callback, cond)


def sample_dpm_solver_3(field, x_init, ts, *, generator=None, callback=None, cond=None):
    """DPM-Solver-3, single-step with ``r1 = 1/3, r2 = 2/3`` (3 NFE per step, order 3)."""
    return _dpm_solver(field, x_init, ts, 3, callback, cond)


# -- DPM-Solver++ (data prediction, multistep) -------------------------------------------------
def _multistep_weights(h: float, lams: list[float]) -> list[float]:
    """Weights ``w_j`` with ``int_0^h e^{tau - h} P(tau) dtau = sum_j w_j x0_j``, where ``P`` is
    the polynomial in ``lambda`` through the stored ``x0_hat`` (newest first, at ``lams``).

    One point: ``1 - e^{-h}``. Two: DPM-Solver++(2M)'s midpoint form (Lu et al. 2022b, Alg. 2).
    Three: the quadratic ``x0 + tau x0' + tau^2/2 x0''`` from divided differences, with
    ``int tau e^{tau-h} = h - (1 - e^{-h})`` and ``int tau^2/2 e^{tau-h} = h^2/2 - h +
    (1 - e^{-h})`` (exact on non-uniform steps).
    """
    em = -math.expm1(-h)  # 1 - e^{-h}
    if len(lams) == 1:
        return [em]
    h0 = lams[0] - lams[1]
    if len(lams) == 2:
        c = 0.5 * h / h0
        return [em * (1.0 + c), -em * c]
    h1 = lams[1] - lams[2]
    k = 2.0 / (h0 + h1)
    # x0'' = k (x0 - x1) / h0 - k (x1 - x2) / h1 ;  x0' = (x0 - x1) / h0 + h0 / 2 * x0''
    second = [k / h0, -k / h0 - k / h1, k / h1]
    first = [
        1.0 / h0 + 0.5 * h0 * second[0],
        -1.0 / h0 + 0.5 * h0 * second[1],
        0.5 * h0 * second[2],
    ]
    c1, c2 = h - em, 0.5 * h * h - h + em
    return [em * (j == 0) + c1 * f + c2 * q for j, (f, q) in enumerate(zip(first, second))]


def _dpmpp_multistep(field, x_init, ts, order, callback, cond, final_extrapolate=False):
    """Adams-type multistep in ``lambda`` on the data form (DPM-Solver++):
    ``x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} sum_j w_j x0_j`` with the weights of
    :func:`_multistep_weights` over the last ``order`` evaluations (fewer on the first steps).

    The step to ``sigma = 0`` returns ``alpha(0) x0_hat`` (first order), or, with
    ``final_extrapolate``, ``x0_hat`` extrapolated to ``sigma_tilde = 0`` linearly in
    ``sigma_tilde^2`` from the last two evaluations: along the flow
    ``x0_hat = x(0) + O(sigma_tilde^2)`` (Tweedie: ``x0_hat = x_tilde + sigma_tilde^2 score``
    and ``dx_tilde / dsigma_tilde = -sigma_tilde score``), so this final step is second order.
    """
    x, ts, g = setup(field, x_init, ts)
    lams: list[float] = []  # newest first
    x0s: list[torch.Tensor] = []
    for i in range(len(g) - 1):
        x0, _ = x0_eps(field, x, g, i, cond)
        lams, x0s = ([g.lam[i]] + lams)[:order], ([x0] + x0s)[:order]
        s, s_n, a_n = g.sigma[i], g.sigma[i + 1], g.alpha[i + 1]
        if s_n == 0.0:  # explicit final step to sigma = 0
            if final_extrapolate and len(x0s) > 1:
                u0 = math.exp(-2.0 * lams[0])  # sigma_tilde^2 = e^{-2 lambda}
                u1 = math.exp(-2.0 * lams[1])
                x = a_n * torch.add(x0, x0 - x0s[1], alpha=u0 / (u1 - u0))
            else:
                x = a_n * x0
        else:
            weights = _multistep_weights(g.lam[i + 1] - g.lam[i], lams)
            x = (s_n / s) * x
            for w, xj in zip(weights, x0s):
                x = torch.add(x, xj, alpha=a_n * w)
        report(callback, i, g, x, x0)
    return x


def sample_dpmpp_2m(
    field, x_init, ts, *, generator=None, callback=None, cond=None, final_extrapolate=False
):
    """DPM-Solver++(2M) (Lu et al. 2022b): data prediction, 2-step multistep, 1 NFE per step.

    ``final_extrapolate``: second-order final step to ``sigma = 0`` (see
    :func:`_dpmpp_multistep`).
    """
    return _dpmpp_multistep(field, x_init, ts, 2, callback, cond, final_extrapolate)


def sample_dpmpp_3m(
    field, x_init, ts, *, generator=None, callback=None, cond=None, final_extrapolate=False
):
    """DPM-Solver++(3M): 3-step multistep on ``x0_hat`` (quadratic in ``lambda``), 1 NFE/step.

    The quadratic's second-derivative term is integrated exactly (``h^2/2 - h + 1 - e^{-h}``),
    which keeps the method third order on non-uniform ``lambda`` steps. ``final_extrapolate``
    as in :func:`sample_dpmpp_2m`.
    """
    return _dpmpp_multistep(field, x_init, ts, 3, callback, cond, final_extrapolate)
