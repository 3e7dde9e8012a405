"""Multistep exponential integrators on the data form: DPM-Solver++(2M/3M), UniPC, DEIS.

All three integrate the probability-flow ODE in its exact semi-linear data form
(Lu et al. 2022b, Eq. 9), with ``lambda = log(alpha / sigma)``:

    x_t = (sigma_t / sigma_s) x_s + sigma_t int_{lambda_s}^{lambda_t} e^{lambda} x0_hat dlambda,

and differ in how they approximate ``x0_hat`` along the step from the stored evaluations
(newest first in ``ctx.state``): DPM-Solver++ by a polynomial in ``lambda`` integrated exactly,
UniPC (Zhao et al. 2023) by its B(h) "unified predictor" plus a corrector that reuses the next
evaluation (no extra NFE), DEIS (Zhang & Chen 2023, tAB) by a Lagrange polynomial in ``t``
integrated by quadrature. One NFE per step; the first steps use lower orders (warm-up: only
``i + 1`` evaluations exist) and, on grids of fewer than 15 steps, so do the last two
(``lower_order_final``, Lu et al. 2022b Sec. 5 / diffusers): the step to ``sigma = 0`` is the
denoising step and the one before it at most second order.

Why the last steps matter: a multistep step of length ``h`` after steps of length ``h0``
extrapolates the stored ``x0_hat`` to ``h / h0`` history lengths away; with a quadratic the
weights grow like ``(h / h0)^2``. On the DDPM grid uniform in ``t`` that ends at ``t = 1/N``
the step from ``t = 0.25`` to ``1e-3`` at NFE 5 has ``h / h0 = 3.6`` and 3M weights
``(8.7, -11.6, 3.9)`` on ``x0_hat`` values that differ by the data scale: the divergence of the
issue (``benchmarks/README.md``).
"""

from __future__ import annotations

import functools
import math
from types import MappingProxyType

import numpy as np
import torch

from probpath.sampling.loop import SamplerSpec, StepContext, as_function

__all__ = ["sample_dpmpp_2m", "sample_dpmpp_3m", "sample_unipc", "sample_deis", "SPECS"]


# -- shared pieces ---------------------------------------------------------------------------
def _push(ctx: StepContext, i: int, x0: torch.Tensor, keep: int) -> tuple[list, list]:
    """Store ``x0_hat`` at grid point ``i``; return (grid indices, x0_hats), newest first."""
    st = ctx.state
    st["idx"] = ([i] + st.get("idx", []))[:keep]
    st["x0s"] = ([x0] + st.get("x0s", []))[:keep]
    return st["idx"], st["x0s"]


def _order_at(i: int, order: int, steps: int, lower_order_final: bool) -> int:
    """Order of step ``i`` of ``steps``: warm-up (``i + 1`` evaluations so far) and, with
    ``lower_order_final``, lower-order final steps on short grids."""
    k = min(order, i + 1)
    if lower_order_final and steps < 15:
        k = min(k, steps - i)
    return k


def _step_order(ctx: StepContext, i: int, order: int) -> int:
    """:func:`_order_at` for the run of ``ctx``."""
    return _order_at(i, order, ctx.steps, ctx.options["lower_order_final"])


def _check_order(o, top: int = 3) -> None:
    order = o["order"]
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= top:
        raise ValueError(f"order must be an integer in 1..{top}, got {order!r}")


def _combine(x: torch.Tensor, a: float, terms) -> torch.Tensor:
    """``a * x + sum(w * y for w, y in terms)``: one new tensor, the terms added in place."""
    out = torch.mul(x, a)
    for w, y in terms:
        out.add_(y, alpha=w)
    return out


# -- DPM-Solver++ (Lu et al. 2022b) ------------------------------------------------------------
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


def _dpmpp(order: int):
    def step(ctx: StepContext, x: torch.Tensor, i: int):
        g = ctx.g
        x0, _ = ctx.x0_eps(x, i)
        idx, x0s = _push(ctx, i, x0, order)
        k = _step_order(ctx, i, order)
        weights = _multistep_weights(g.lam[i + 1] - g.lam[i], [g.lam[j] for j in idx[:k]])
        a_n = g.alpha[i + 1]
        return _combine(
            x, g.sigma[i + 1] / g.sigma[i], [(a_n * w, y) for w, y in zip(weights, x0s)]
        ), x0

    def final(ctx: StepContext, x: torch.Tensor, i: int):
        """``alpha(0) x0_hat``, or with ``final_extrapolate`` ``x0_hat`` extrapolated to
        ``sigma_tilde = 0`` linearly in ``sigma_tilde^2`` from the last two evaluations: along
        the flow ``x0_hat = x(0) + O(sigma_tilde^2)`` (Tweedie: ``x0_hat = x_tilde +
        sigma_tilde^2 score`` and ``dx_tilde / dsigma_tilde = -sigma_tilde score``), so this
        final step is second order."""
        g = ctx.g
        x0, _ = ctx.x0_eps(x, i)
        idx, x0s = _push(ctx, i, x0, 2)
        if ctx.options["final_extrapolate"] and len(x0s) > 1:
            u0 = math.exp(-2.0 * g.lam[idx[0]])  # sigma_tilde^2 = e^{-2 lambda}
            u1 = math.exp(-2.0 * g.lam[idx[1]])
            return g.alpha[i + 1] * torch.add(x0, x0 - x0s[1], alpha=u0 / (u1 - u0)), x0
        return g.alpha[i + 1] * x0, x0

    return step, final


_DPMPP_OPTIONS = MappingProxyType({"final_extrapolate": False, "lower_order_final": True})
_STEP2, _FINAL2 = _dpmpp(2)
_STEP3, _FINAL3 = _dpmpp(3)
DPMPP_2M = SamplerSpec(
    "dpmpp_2m",
    _STEP2,
    "DPM-Solver++(2M) (Lu et al. 2022b): data prediction, 2-step multistep, 1 NFE per step.",
    order=2,
    options=_DPMPP_OPTIONS,
    final=_FINAL2,
)
DPMPP_3M = SamplerSpec(
    "dpmpp_3m",
    _STEP3,
    "DPM-Solver++(3M): quadratic in lambda integrated exactly, 1 NFE per step (order 3).",
    order=3,
    options=_DPMPP_OPTIONS,
    final=_FINAL3,
)


# -- UniPC (Zhao et al. 2023) ------------------------------------------------------------------
# The updates of a run are linear combinations ``a x + sum_j w_j m_j`` of the stored x0_hat
# ``m_j``: the evaluations live in a ``(order + 1, numel)`` buffer (slot ``j % (order + 1)``
# for grid point ``j``) and each update is one ``addmm`` over it, its ``(a, w)`` taken from a
# plan of the whole grid built once per grid (memoised). Per step that is one copy and two
# products instead of ~9 tensor operations and a memo look-up per update: for the small
# tensors of a sampler's inner loop the per-operation overhead is the cost
# (benchmarks/README.md, UniPC overhead).
def _unipc_combination(
    lam: tuple[float, ...],
    alpha: tuple[float, ...],
    sigma: tuple[float, ...],
    s: int,
    t: int,
    k: int,
    corrector: bool,
    variant: str,
    slots: int,
) -> tuple[float, list[float]]:
    """``(a, w)`` of the UniP (or UniC, ``corrector``) update from grid point ``s`` to ``t``
    in the data form, ``w`` indexed by buffer slot.

    The evaluations used are grid points ``s, s - 1, .., s - k + 1`` (``m0`` at ``s``) and,
    for the corrector, ``t`` itself. With ``r_k = (lambda_k - lambda_s) / h`` and ``D_k =
    (m_k - m0) / r_k`` (Zhao et al., Alg. 1-2, with ``hh = -h`` for the data form): ``x_t =
    (sigma_t / sigma_s) x_s - alpha_t (e^{hh} - 1) m0 - alpha_t B(h) sum_k rho_k D_k`` where
    ``rho`` solves ``R rho = b``, ``R_{qk} = r_k^q``, ``b_q = q! phi_{q+1}(hh) / B(h)``
    (Eq. 8-9), ``B(h) = hh`` (bh1) or ``e^{hh} - 1`` (bh2). The corrector adds the new
    evaluation ``x0_t`` at ``r = 1``.
    """
    # an evaluation at lambda = -inf (alpha = 0, flow paths at t = 1) has r = -inf: it carries
    # no information on the lambda-polynomial, so it is left out (a lower-order step)
    hist = [j for j in range(s - 1, s - k, -1) if math.isfinite(lam[j])]
    a, w0, ws = _unipc_coefficients(
        lam[s],
        lam[t],
        tuple(lam[j] for j in hist),
        corrector,
        variant,
        alpha[t],
        sigma[t] / sigma[s],
    )
    cols = [s, *hist, *([t] if corrector else [])]
    w = [0.0] * slots
    for j, wj in zip(cols, (w0, *ws)):
        w[j % slots] = wj  # at most order + 1 consecutive grid points: distinct slots
    return a, w


@functools.lru_cache(maxsize=256)
def _unipc_plan(
    lam: tuple[float, ...],
    alpha: tuple[float, ...],
    sigma: tuple[float, ...],
    options: tuple,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple:
    """For every step ``i`` of the grid: ``(corrector, predictor)``, each ``(a, w)`` with ``w``
    a ``(1, order + 1)`` tensor of slot weights, or ``None`` (no corrector at step 0 or when
    switched off; no predictor on the final step to ``sigma = 0``)."""
    order, variant, corrector, lower_order_final = options
    steps = len(lam) - 1

    def tensor(aw: tuple[float, list[float]]) -> tuple[float, torch.Tensor]:
        return aw[0], torch.tensor([aw[1]], dtype=dtype, device=device)

    def update(s: int, corrector_step: bool):  # s -> s + 1, order as _step_order's
        k = _order_at(s, order, steps, lower_order_final)
        return _unipc_combination(
            lam, alpha, sigma, s, s + 1, k, corrector_step, variant, order + 1
        )

    plan = []
    for i in range(steps):
        corr = update(i - 1, True) if corrector and i >= 1 else None
        pred = update(i, False) if sigma[i + 1] != 0.0 else None
        plan.append(tuple(None if c is None else tensor(c) for c in (corr, pred)))
    return tuple(plan)


@functools.lru_cache(maxsize=4096)
def _unipc_coefficients(
    lam_s: float,
    lam_t: float,
    lams: tuple[float, ...],
    corrector: bool,
    variant: str,
    a_t: float,
    ratio: float,
) -> tuple[float, float, tuple[float, ...]]:
    """``(sigma_t / sigma_s, weight of m0, weights of the other evaluations)`` of one UniPC
    update (a pure function of the step: memoised, so the sampler's Python work per step is a
    dictionary look-up on a repeated grid)."""
    h = lam_t - lam_s
    hh = -h
    w0 = -a_t * math.expm1(hh)  # weight of m0; D_k = (m_k - m0) / r_k is folded into the weights
    rks = tuple((lam - lam_s) / h for lam in lams) + ((1.0,) if corrector else ())
    if not rks:
        return ratio, w0, ()
    ws = tuple(-a_t * w for w in _unipc_weights(hh, rks, variant))
    return ratio, w0 - sum(ws), ws


@functools.lru_cache(maxsize=4096)
def _unipc_weights(hh: float, rks: tuple[float, ...], variant: str) -> tuple[float, ...]:
    """``B(h) rho_k / r_k`` of one UniPC update: a pure function of the step (memoised, so a
    repeated grid costs no linear solves)."""
    h_phi_1 = math.expm1(hh)
    # B(h) = hh (bh1) is unbounded on a step from alpha = 0 (lambda = -inf): use bh2's there
    b_h = hh if variant == "bh1" and math.isfinite(hh) else h_phi_1
    k = len(rks)
    b, h_phi_k, fac = [], h_phi_1 / hh - 1.0, 1.0
    for q in range(1, k + 1):
        b.append(h_phi_k * fac / b_h)
        fac *= q + 1
        h_phi_k = h_phi_k / hh - 1.0 / fac
    if k == 1:
        rhos = [0.5]  # Zhao et al.: the order-2 predictor / order-1 corrector use rho = 1/2
    else:
        r = np.array([[rk**q for rk in rks] for q in range(k)])
        rhos = np.linalg.solve(r, np.array(b)).tolist()
    return tuple(b_h * rho / rk for rho, rk in zip(rhos, rks))


def _unipc_step(ctx: StepContext, x: torch.Tensor, i: int):
    o, st = ctx.options, ctx.state
    x0, _ = ctx.x0_eps(x, i)
    if "plan" not in st:  # first step: the history buffer and the plan of this grid
        g, k = ctx.g, o["order"] + 1
        key = (o["order"], o["variant"], o["corrector"], o["lower_order_final"])
        lam, alpha, sigma = tuple(g.lam), tuple(g.alpha), tuple(g.sigma)
        st["plan"] = _unipc_plan(lam, alpha, sigma, key, x0.dtype, x0.device)
        # zeros: a slot not yet written has weight 0 and must not hold NaN
        st["mat"] = torch.zeros((k, x0.numel()), dtype=x0.dtype, device=x0.device)
        st["slots"] = [row.view(x0.shape) for row in st["mat"]]
    st["slots"][i % len(st["slots"])].copy_(x0)
    corr, pred = st["plan"][i]
    if corr is not None:  # UniC: correct x_i with the evaluation just made
        x = torch.addmm(st["prev"].reshape(1, -1), corr[1], st["mat"], beta=corr[0])
        x = x.view_as(x0)
    if pred is None:  # the final step: denoise (no corrector after it)
        return ctx.g.alpha[i + 1] * x0, x0
    st["prev"] = x
    return torch.addmm(x.reshape(1, -1), pred[1], st["mat"], beta=pred[0]).view_as(x0), x0


def _check_unipc(o):
    _check_order(o)
    if o["variant"] not in ("bh1", "bh2"):
        raise ValueError(f"variant must be 'bh1' or 'bh2', got {o['variant']!r}")


UNIPC = SamplerSpec(
    "unipc",
    _unipc_step,
    "UniPC (Zhao et al. 2023): UniP predictor + UniC corrector, bh1/bh2, 1 NFE per step.",
    order=4,  # UniP-3 + UniC: order 3 + 1 (order 3 chosen on bench_samplers' tuning seeds)
    options=MappingProxyType(
        {"order": 3, "variant": "bh2", "corrector": True, "lower_order_final": True}
    ),
    check=_check_unipc,
    final=_unipc_step,
)


# -- DEIS, tAB (Zhang & Chen 2023) -------------------------------------------------------------
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)


def _deis_coefficients(ctx: StepContext, i: int, idx: list[int]) -> tuple[float, ...]:
    """``C_j = int_{t_i}^{t_{i+1}} l_j(tau) d(alpha/sigma)(tau)``, ``l_j`` the Lagrange basis in
    ``t`` through the stored times: 8-point Gauss-Legendre in ``rho = alpha / sigma`` (the
    integrand is a polynomial in ``t(rho)``, smooth and bounded on the step)."""
    g = ctx.g
    ts = tuple(g.t[j] for j in idx)
    return _deis_quadrature(ctx.field.path.schedule, g.lam[i], g.lam[i + 1], ts)


@functools.lru_cache(maxsize=4096)
def _deis_quadrature(schedule, lam0: float, lam1: float, ts: tuple[float, ...]):
    """The coefficients of :func:`_deis_coefficients` (a pure function: memoised)."""
    r0, r1 = math.exp(lam0), math.exp(lam1)
    rho = 0.5 * (r1 + r0) + 0.5 * (r1 - r0) * _GL_NODES
    lam2 = torch.from_numpy(2.0 * np.log(np.maximum(rho, 1e-300)))
    tau = schedule.t_from_log_snr(lam2).numpy()
    out = []
    for j, tj in enumerate(ts):
        basis = np.ones_like(tau)
        for m, tm in enumerate(ts):
            if m != j:
                basis *= (tau - tm) / (tj - tm)
        out.append(0.5 * (r1 - r0) * float(np.dot(_GL_WEIGHTS, basis)))
    return tuple(out)


def _deis_step(ctx: StepContext, x: torch.Tensor, i: int):
    """tAB-DEIS on the data form: ``x_{i+1} = (sigma_{i+1} / sigma_i) x_i + sigma_{i+1}
    sum_j C_j x0_j`` (exact for ``x0_hat`` polynomial in ``t`` of degree ``order - 1``)."""
    g, order = ctx.g, ctx.options["order"]
    x0, _ = ctx.x0_eps(x, i)
    idx, x0s = _push(ctx, i, x0, order)
    k = _step_order(ctx, i, order)
    coef = _deis_coefficients(ctx, i, idx[:k])
    s_n = g.sigma[i + 1]
    return _combine(x, s_n / g.sigma[i], [(s_n * c, y) for c, y in zip(coef, x0s)]), x0


DEIS = SamplerSpec(
    "deis",
    _deis_step,
    "DEIS tAB (Zhang & Chen 2023): x0_hat extrapolated in t, exponential integrator, 1 NFE/step.",
    order=3,
    options=MappingProxyType({"order": 3, "lower_order_final": True}),
    check=_check_order,
)

SPECS = (DPMPP_2M, DPMPP_3M, UNIPC, DEIS)

sample_dpmpp_2m = as_function(DPMPP_2M)
sample_dpmpp_3m = as_function(DPMPP_3M)
sample_unipc = as_function(UNIPC)
sample_deis = as_function(DEIS)
