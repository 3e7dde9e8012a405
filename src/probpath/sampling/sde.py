"""Stochastic and DDIM-family samplers (survey §2.2-§2.5): Langevin, ancestral DDPM, DDIM(eta),
reverse-SDE Euler-Maruyama, predictor-corrector, EDM Heun with churn.

Step functions plus :class:`~probpath.sampling.loop.SamplerSpec` s, as in
:mod:`probpath.sampling.ode`; all noise comes from the run's ``generator``; the step to
``sigma = 0`` is the loop's denoising step ``x = alpha(0) x0_hat`` without noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import MappingProxyType

import torch

from probpath.sampling.loop import SamplerSpec, StepContext, as_function, denoise

__all__ = [
    "sample_langevin",
    "sample_annealed_langevin",
    "sample_ancestral",
    "sample_ddim",
    "sample_euler_maruyama",
    "sample_pc",
    "sample_edm_heun",
    "sample_interpolant_sde",
    "DIFFUSIONS",
    "diffusion_coefficient",
    "SPECS",
]


# -- Langevin (one level per grid point) -------------------------------------------------------
def _langevin_level(anneal: bool):
    """``n_steps`` Langevin steps (Eq. 32) at the noise level of grid point ``i``; ``x`` then
    moves on to the next level unchanged (NCSN, Song & Ermon 2019, Alg. 1)."""

    def step(ctx: StepContext, x: torch.Tensor, i: int):
        g, o = ctx.g, ctx.options
        eps_i = o["step_size"]
        if anneal:  # NCSN: step_size * sigma_i^2 / sigma_L^2, sigma_L the smallest level > 0
            last = len(g) - 1 if g.sigma[-1] > 0.0 else len(g) - 2
            s_last = g.sigma[last] / g.alpha[last]
            eps_i *= (g.sigma[i] / g.alpha[i] / s_last) ** 2
        x0 = x
        for _ in range(o["n_steps"]):
            x0, e = ctx.x0_eps(x, i)
            x = x + (0.5 * eps_i / -g.sigma[i]) * e + math.sqrt(eps_i) * ctx.noise(x)
        return x, x0

    def final(ctx: StepContext, x: torch.Tensor, i: int):
        x, _ = step(ctx, x, i)
        return denoise(ctx, x, i)

    return step, final


def _check_langevin(o):
    n = o["n_steps"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or not o["step_size"] > 0:
        raise ValueError(
            f"n_steps must be an integer >= 1 and step_size > 0, got n_steps={n!r}, "
            f"step_size={o['step_size']!r}"
        )


_LANGEVIN, _LANGEVIN_FINAL = _langevin_level(anneal=False)
_ANNEALED, _ANNEALED_FINAL = _langevin_level(anneal=True)
LANGEVIN = SamplerSpec(
    "langevin",
    _LANGEVIN,
    "Unadjusted Langevin dynamics, Eq. (32): n_steps steps of step_size at each grid time.",
    deterministic=False,
    options=MappingProxyType({"n_steps": 100, "step_size": 1e-3}),
    check=_check_langevin,
    step_nfe=lambda o: o["n_steps"],
    final=_LANGEVIN_FINAL,
    final_nfe=lambda o: o["n_steps"] + 1,
    last=_LANGEVIN,
)
ANNEALED_LANGEVIN = SamplerSpec(
    "annealed_langevin",
    _ANNEALED,
    "Annealed Langevin dynamics (NCSN, Song & Ermon 2019, Alg. 1; survey §2.2).",
    deterministic=False,
    options=MappingProxyType({"n_steps": 100, "step_size": 2e-5}),
    check=_check_langevin,
    step_nfe=lambda o: o["n_steps"],
    final=_ANNEALED_FINAL,
    final_nfe=lambda o: o["n_steps"] + 1,
    last=_ANNEALED,
)


# -- DDPM ancestral / DDIM ---------------------------------------------------------------------
def _posterior(g, i):
    """``alpha_{t|s}``, ``sigma_{t|s}^2`` of ``q(x_t | x_s)`` for ``t = t_i > s = t_{i+1}``."""
    a_ts = g.alpha[i] / g.alpha[i + 1]
    var_ts = g.sigma[i] ** 2 - a_ts**2 * g.sigma[i + 1] ** 2
    return a_ts, max(var_ts, 0.0)


def _ancestral_step(ctx: StepContext, x: torch.Tensor, i: int):
    """Eq. 39 on any grid: ``x_s ~ N(mu, v I)``, ``mu`` the mean of ``q(x_s | x_t, x0_hat)``,
    ``v = beta_tilde = sigma_{t|s}^2 sigma_s^2 / sigma_t^2`` or ``beta = sigma_{t|s}^2``."""
    g = ctx.g
    x0, _ = ctx.x0_eps(x, i)
    a_ts, var_ts = _posterior(g, i)
    s2, s2_n = g.sigma[i] ** 2, g.sigma[i + 1] ** 2
    mean = (a_ts * s2_n / s2) * x + (g.alpha[i + 1] * var_ts / s2) * x0
    var = var_ts * s2_n / s2 if ctx.options["variance"] == "beta_tilde" else var_ts
    return mean + math.sqrt(var) * ctx.noise(x), x0


def _check_variance(o):
    if o["variance"] not in ("beta", "beta_tilde"):
        raise ValueError(f"variance must be 'beta' or 'beta_tilde', got {o['variance']!r}")


ANCESTRAL = SamplerSpec(
    "ancestral",
    _ancestral_step,
    "Ancestral sampling of the DDPM reverse chain (survey Eq. 35, 39) on any grid.",
    "uniform",
    deterministic=False,
    options=MappingProxyType({"variance": "beta_tilde"}),
    check=_check_variance,
)


def _ddim_step(ctx: StepContext, x: torch.Tensor, i: int):
    """DDIM (Song, Meng & Ermon 2021, Eq. 12): ``x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2)
    eps_hat + c z`` with ``c = eta sqrt(beta_tilde)``."""
    g = ctx.g
    x0, eps = ctx.x0_eps(x, i)
    s_n = g.sigma[i + 1]
    _, var_ts = _posterior(g, i)
    c = min(ctx.options["eta"] * math.sqrt(var_ts * s_n**2 / g.sigma[i] ** 2), s_n)
    x = g.alpha[i + 1] * x0 + math.sqrt(max(s_n**2 - c * c, 0.0)) * eps
    if c > 0.0:
        x = x + c * ctx.noise(x)
    return x, x0


def _check_eta(o):
    if not o["eta"] >= 0:
        raise ValueError(f"eta must be >= 0, got {o['eta']!r}")


DDIM = SamplerSpec(
    "ddim",
    _ddim_step,
    "DDIM (Song et al. 2021, Eq. 12) with stochasticity eta (0: deterministic, order 1).",
    order=1,
    options=MappingProxyType({"eta": 0.0}),
    check=_check_eta,
)


# -- reverse SDE and predictor-corrector -------------------------------------------------------
def _corrector(ctx: StepContext, x: torch.Tensor, i: int) -> torch.Tensor:
    """``n_corrector`` Langevin steps with step ``2 (snr ||z|| / ||score||)^2`` (batch-mean
    norms, one step size for the batch as in Song et al.'s reference; Alg. 4-5)."""
    for _ in range(ctx.options.get("n_corrector", 0)):
        _, eps = ctx.x0_eps(x, i)
        score = -eps / ctx.g.sigma[i]
        z = ctx.noise(x)
        z_norm = float(z.flatten(1).norm(dim=1).mean())
        s_norm = max(float(score.flatten(1).norm(dim=1).mean()), 1e-30)
        step = 2.0 * (ctx.options["snr"] * z_norm / s_norm) ** 2
        x = x + step * score + math.sqrt(2.0 * step) * z
    return x


def _pc_step(ctx: StepContext, x: torch.Tensor, i: int):
    """Corrector, then reverse-SDE Euler-Maruyama (Eq. 43) from ``t_i`` to ``t_{i+1}``; the
    grid's last step returns the predictor's mean (Song et al. 2021)."""
    g = ctx.g
    x = _corrector(ctx, x, i)
    x0, eps = ctx.x0_eps(x, i)
    f, gg = (
        float(c) for c in ctx.field.path.sde_coefficients(torch.tensor(g.t[i], dtype=torch.float64))
    )
    dt = g.t[i] - g.t[i + 1]  # > 0: time runs backwards
    mean = x - (f * x + (gg * gg / g.sigma[i]) * eps) * dt  # score = -eps / sigma
    if i == ctx.steps - 1:
        return mean, x0
    return mean + (gg * math.sqrt(dt)) * ctx.noise(x), x0


def _pc_final(ctx: StepContext, x: torch.Tensor, i: int):
    return denoise(ctx, _corrector(ctx, x, i), i)


def _check_pc(o):
    n = o["n_corrector"]
    if not o["snr"] > 0 or isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(
            f"snr must be > 0 and n_corrector an integer >= 0, got snr={o['snr']!r}, "
            f"n_corrector={n!r}"
        )


PC = SamplerSpec(
    "pc",
    _pc_step,
    "Predictor-corrector (Song et al. 2021, Alg. 1-3): Langevin corrector + reverse-SDE step.",
    "uniform",
    deterministic=False,
    options=MappingProxyType({"snr": 0.16, "n_corrector": 1}),
    check=_check_pc,
    step_nfe=lambda o: 1 + o["n_corrector"],
    final=_pc_final,
    final_nfe=lambda o: 1 + o["n_corrector"],
    needs_alpha=True,
)
EULER_MARUYAMA = SamplerSpec(
    "euler_maruyama",
    _pc_step,
    "Euler-Maruyama on the reverse-time SDE dx = [f x - g^2 score] dt + g dw (Eq. 43).",
    "uniform",
    deterministic=False,
    needs_alpha=True,
)


# -- EDM Heun with churn -----------------------------------------------------------------------
def _edm_heun_step(ctx: StepContext, x: torch.Tensor, i: int):
    """EDM's Heun step (Karras et al. 2022, Alg. 2) in ``x_tilde = x / alpha``,
    ``sigma_tilde = sigma / alpha``, where ``dx_tilde / dsigma_tilde = eps_hat``; with churn,
    noise first raises ``sigma_tilde`` by ``gamma = min(churn / N, sqrt(2) - 1)``."""
    g, o = ctx.g, ctx.options
    xt = x / g.alpha[i]
    st, st_n = g.sigma[i] / g.alpha[i], g.sigma[i + 1] / g.alpha[i + 1]
    gamma = min(o["churn"] / ctx.steps, math.sqrt(2.0) - 1.0)
    if gamma > 0.0 and o["s_tmin"] <= st <= o["s_tmax"]:
        st_hat = st * (1.0 + gamma)
        xt = xt + math.sqrt(st_hat**2 - st**2) * o["s_noise"] * ctx.noise(xt)
        t_hat = float(
            ctx.field.path.t_from_log_snr(
                torch.tensor(-2.0 * math.log(st_hat), dtype=torch.float64)
            )
        )
        a_hat = float(ctx.field.path(torch.tensor(t_hat, dtype=torch.float64)).alpha)
        x0, d, _ = ctx.at(a_hat * xt, t_hat)
    else:
        st_hat = st
        x0, d = ctx.x0_eps(g.alpha[i] * xt, i)
    x_next = xt + (st_n - st_hat) * d
    _, d2 = ctx.x0_eps(g.alpha[i + 1] * x_next, i + 1)
    return g.alpha[i + 1] * (xt + (st_n - st_hat) * 0.5 * (d + d2)), x0


def _check_edm(o):
    if not (o["churn"] >= 0 and o["s_noise"] >= 0):
        raise ValueError(f"churn and s_noise must be >= 0, got {o['churn']}, {o['s_noise']}")


EDM_HEUN = SamplerSpec(
    "edm_heun",
    _edm_heun_step,
    "EDM's Heun sampler (Karras et al. 2022, Alg. 2) in sigma_tilde, optional churn.",
    "edm",
    order=2,
    options=MappingProxyType({"churn": 0.0, "s_tmin": 0.0, "s_tmax": float("inf"), "s_noise": 1.0}),
    check=_check_edm,
    step_nfe=lambda o: 2,
    needs_alpha=True,
)


# -- the interpolant SDE family with a tunable w(t) ---------------------------------------------
def _zero(t: float, path) -> float:
    return 0.0


def _sigma(t: float, path) -> float:
    return float(path(torch.tensor(t, dtype=torch.float64)).sigma)


def _sde(t: float, path) -> float:
    return float(path.sde_coefficients(torch.tensor(t, dtype=torch.float64))[1])


#: named diffusion coefficients ``w(t)`` of the ``interpolant_sde`` sampler
DIFFUSIONS: dict[str, Callable[[float, object], float]] = {
    "zero": _zero,  # the probability-flow ODE
    "sigma": _sigma,  # w = sigma_t, SiT's default; finite at both ends of linear / GVP paths
    "sde": _sde,  # w = g(t), the path's SDE (Eq. 42): score SDEs' reverse SDE (Eq. 43)
}


def diffusion_coefficient(
    diffusion: str | Callable[[float], float], t: float, path, scale: float = 1.0
) -> float:
    """``scale * w(t)`` for a name of :data:`DIFFUSIONS` or a callable ``w(t) -> float``."""
    if callable(diffusion):
        w = float(diffusion(t))
    else:
        if diffusion not in DIFFUSIONS:
            raise ValueError(
                f"diffusion must be one of {', '.join(map(repr, DIFFUSIONS))} or a callable "
                f"w(t); got {diffusion!r}"
            )
        w = DIFFUSIONS[diffusion](t, path)
    w *= scale
    if not math.isfinite(w) or w < 0:
        raise ValueError(
            f"the diffusion coefficient must be finite and >= 0, got w({t:.4g}) = {w}; "
            "'sde' is infinite where alpha = 0: start the grid below t = 1"
        )
    return w


def _interpolant_sde_step(ctx: StepContext, x: torch.Tensor, i: int):
    """Euler-Maruyama on the marginal-preserving family ``dx = [v - (w^2/2) score] dt + w dW``
    backwards in time (Albergo et al. 2023, §2.4; derivation in
    :mod:`probpath.velocity.interpolants`): ``x <- x - h v + h (w^2/2) score + w sqrt(h) z``
    with ``h = t_i - t_{i+1}``; the grid's last step adds no noise."""
    g, o = ctx.g, ctx.options
    x0, eps = ctx.x0_eps(x, i)
    h = g.t[i] - g.t[i + 1]
    w = diffusion_coefficient(o["diffusion"], g.t[i], ctx.field.path, o["scale"])
    velocity = g.d_alpha[i] * x0 + g.d_sigma[i] * eps
    # (w^2 / 2) score = -(w^2 / (2 sigma)) eps_hat
    x = x - h * velocity - (h * w * w / (2.0 * g.sigma[i])) * eps
    if i < ctx.steps - 1 and w > 0.0:
        x = x + (w * math.sqrt(h)) * ctx.noise(x)
    return x, x0


def _check_interpolant_sde(o):
    if not o["scale"] >= 0:
        raise ValueError(f"scale must be >= 0, got {o['scale']!r}")
    if not callable(o["diffusion"]) and o["diffusion"] not in DIFFUSIONS:
        raise ValueError(
            f"diffusion must be one of {', '.join(map(repr, DIFFUSIONS))} or a callable w(t); "
            f"got {o['diffusion']!r}"
        )


INTERPOLANT_SDE = SamplerSpec(
    "interpolant_sde",
    _interpolant_sde_step,
    "Stochastic-interpolant SDE with tunable w(t) (Albergo et al. 2023; SiT): w = 0 is Euler.",
    "uniform",
    deterministic=False,
    options=MappingProxyType({"diffusion": "sigma", "scale": 1.0}),
    check=_check_interpolant_sde,
)

SPECS = (
    ANCESTRAL,
    DDIM,
    EULER_MARUYAMA,
    PC,
    EDM_HEUN,
    LANGEVIN,
    ANNEALED_LANGEVIN,
    INTERPOLANT_SDE,
)

sample_langevin = as_function(LANGEVIN)
sample_annealed_langevin = as_function(ANNEALED_LANGEVIN)
sample_ancestral = as_function(ANCESTRAL)
sample_ddim = as_function(DDIM)
sample_euler_maruyama = as_function(EULER_MARUYAMA)
sample_pc = as_function(PC)
sample_edm_heun = as_function(EDM_HEUN)
sample_interpolant_sde = as_function(INTERPOLANT_SDE)
