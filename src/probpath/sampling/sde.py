"""Stochastic and DDIM-family samplers (survey §2.2-§2.5): Langevin, ancestral DDPM, DDIM(eta),
reverse-SDE Euler-Maruyama, predictor-corrector, EDM Heun with churn.

Same signature as :mod:`probpath.sampling.ode`:
``sample_<name>(field, x_init, ts, *, generator=None, callback=None, cond=None, **options)``;
all noise comes from ``generator``; a step to ``sigma = 0`` is the explicit denoising step
``x = alpha(0) x0_hat`` without noise.
"""

from __future__ import annotations

import math

import torch

from probpath.sampling.ode import at_time, report, setup, x0_eps
from probpath.sampling.timesteps import GridValues

__all__ = [
    "sample_langevin",
    "sample_annealed_langevin",
    "sample_ancestral",
    "sample_ddim",
    "sample_euler_maruyama",
    "sample_pc",
    "sample_edm_heun",
]


def _noise(x, generator):
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _langevin_loop(field, x_init, ts, generator, callback, cond, n_steps, step_size, anneal):
    if n_steps < 1 or step_size <= 0:
        raise ValueError("n_steps must be >= 1 and step_size > 0")
    x, ts, g = setup(field, x_init, ts)
    levels = [i for i in range(len(g)) if g.sigma[i] > 0.0]
    s_last = g.sigma[levels[-1]] / g.alpha[levels[-1]]
    x0 = x
    for i in range(len(g)):
        if g.sigma[i] == 0.0:  # explicit denoising at the end
            x = g.alpha[i] * x0_eps(field, x, g, i - 1, cond)[0]
            continue
        s = g.sigma[i] / g.alpha[i]
        eps_i = (
            step_size * (s / s_last) ** 2 if anneal else step_size
        )  # NCSN: eps sigma^2/sigma_L^2
        for _ in range(n_steps):
            x0, e = x0_eps(field, x, g, i, cond)
            score = -e / g.sigma[i]
            x = x + (0.5 * eps_i) * score + math.sqrt(eps_i) * _noise(x, generator)  # Eq. (32)
        if callback is not None and i + 1 < len(g):
            report(callback, i, g, x, x0)
    return x


def sample_langevin(
    field,
    x_init,
    ts,
    *,
    generator=None,
    callback=None,
    cond=None,
    n_steps: int = 100,
    step_size: float = 1e-3,
):
    """Unadjusted Langevin dynamics, Eq. (32): ``x <- x + (eps/2) score + sqrt(eps) z``.

    ``n_steps`` steps of size ``step_size`` at each time of ``ts`` in turn (usually one small
    ``t``); ``n_steps`` NFE per level.
    """
    return _langevin_loop(
        field, x_init, ts, generator, callback, cond, n_steps, step_size, anneal=False
    )


def sample_annealed_langevin(
    field,
    x_init,
    ts,
    *,
    generator=None,
    callback=None,
    cond=None,
    n_steps: int = 100,
    step_size: float = 2e-5,
):
    """Annealed Langevin dynamics (NCSN, Song & Ermon 2019, Alg. 1; survey §2.2).

    At each noise level ``sigma_i`` of ``ts`` (with ``sigma_tilde = sigma / alpha``), run
    ``n_steps`` Langevin steps (Eq. 32) of size ``step_size * sigma_i^2 / sigma_L^2``, where
    ``sigma_L`` is the smallest level.
    """
    return _langevin_loop(
        field, x_init, ts, generator, callback, cond, n_steps, step_size, anneal=True
    )


def _posterior(g, i):
    """``alpha_{t|s}``, ``sigma_{t|s}^2`` of ``q(x_t | x_s)`` for ``t = t_i > s = t_{i+1}``."""
    a_ts = g.alpha[i] / g.alpha[i + 1]
    var_ts = g.sigma[i] ** 2 - a_ts**2 * g.sigma[i + 1] ** 2
    return a_ts, max(var_ts, 0.0)


def sample_ancestral(
    field,
    x_init,
    ts,
    *,
    generator=None,
    callback=None,
    cond=None,
    variance: str = "beta_tilde",
):
    """Ancestral sampling of the DDPM reverse chain (survey Eq. 35, 39) on any grid.

    Draws ``x_s ~ N(mu, v I)`` with the posterior mean of ``q(x_s | x_t, x0_hat)`` (the text
    after Eq. 38; with ``x0_hat`` from ``eps_hat`` this is Eq. 39's mean) and variance
    ``beta_tilde = sigma_{t|s}^2 sigma_s^2 / sigma_t^2`` or ``beta = sigma_{t|s}^2``
    (``variance="beta"``), where ``alpha_{t|s} = alpha_t / alpha_s``,
    ``sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2``. On the 1000-step DDPM grid these are
    exactly ``beta_t`` and ``beta_tilde_t``. The step to ``sigma = 0`` adds no noise.
    """
    if variance not in ("beta", "beta_tilde"):
        raise ValueError(f"variance must be 'beta' or 'beta_tilde', got {variance!r}")
    x, ts, g = setup(field, x_init, ts)
    for i in range(len(g) - 1):
        x0, _ = x0_eps(field, x, g, i, cond)
        if g.sigma[i + 1] == 0.0:
            x = g.alpha[i + 1] * x0
        else:
            a_ts, var_ts = _posterior(g, i)
            s2, s2_n = g.sigma[i] ** 2, g.sigma[i + 1] ** 2
            mean = (a_ts * s2_n / s2) * x + (g.alpha[i + 1] * var_ts / s2) * x0
            var = var_ts * s2_n / s2 if variance == "beta_tilde" else var_ts
            x = mean + math.sqrt(var) * _noise(x, generator)
        report(callback, i, g, x, x0)
    return x


def sample_ddim(field, x_init, ts, *, generator=None, callback=None, cond=None, eta: float = 0.0):
    """DDIM (Song, Meng & Ermon 2021, Eq. 12) with stochasticity ``eta``.

    ``x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z`` with
    ``c = eta sqrt(beta_tilde)``; ``eta = 0`` is deterministic (= DPM-Solver-1), ``eta = 1`` is
    ancestral sampling with ``beta_tilde``.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    x, ts, g = setup(field, x_init, ts)
    for i in range(len(g) - 1):
        x0, eps = x0_eps(field, x, g, i, cond)
        s_n = g.sigma[i + 1]
        _, var_ts = _posterior(g, i)
        c = eta * math.sqrt(var_ts * s_n**2 / g.sigma[i] ** 2)
        c = min(c, s_n)
        x = g.alpha[i + 1] * x0 + math.sqrt(max(s_n**2 - c * c, 0.0)) * eps
        if c > 0.0:
            x = x + c * _noise(x, generator)
        report(callback, i, g, x, x0)
    return x


def _sde_step(field, x, g, i, cond, generator):
    """Reverse-SDE Euler-Maruyama step (Eq. 43) from ``t_i`` to ``t_{i+1}``; returns
    ``(x_next, x_mean, x0_hat)``."""
    x0, eps = x0_eps(field, x, g, i, cond)
    if g.sigma[i + 1] == 0.0:
        x = g.alpha[i + 1] * x0
        return x, x, x0
    t = torch.tensor(g.t[i], dtype=torch.float64)
    f, gg = (float(c) for c in field.path.sde_coefficients(t))
    dt = g.t[i] - g.t[i + 1]  # > 0: time runs backwards
    score = -eps / g.sigma[i]
    mean = x - (f * x - gg * gg * score) * dt
    return mean + (gg * math.sqrt(dt)) * _noise(x, generator), mean, x0


def sample_euler_maruyama(field, x_init, ts, *, generator=None, callback=None, cond=None):
    """Euler-Maruyama on the reverse-time SDE ``dx = [f x - g^2 score] dt + g dw_bar`` (Eq. 43).

    The last step returns the mean (no noise), as in Song et al. (2021). It is the
    predictor-corrector sampler without corrector steps (1 NFE per step).
    """
    return sample_pc(
        field, x_init, ts, generator=generator, callback=callback, cond=cond, n_corrector=0
    )


def sample_pc(
    field,
    x_init,
    ts,
    *,
    generator=None,
    callback=None,
    cond=None,
    snr: float = 0.16,
    n_corrector: int = 1,
):
    """Predictor-corrector (Song et al. 2021, Alg. 1-3): at each time, ``n_corrector`` Langevin
    corrector steps with step ``2 (snr ||z|| / ||score||)^2`` (norms averaged over the batch),
    then one reverse-SDE
    Euler-Maruyama predictor step. ``(1 + n_corrector)`` NFE per step; the last step returns
    the predictor's mean."""
    if snr <= 0 or n_corrector < 0:
        raise ValueError("snr must be > 0 and n_corrector >= 0")
    x, ts, g = setup(field, x_init, ts)
    for i in range(len(g) - 1):
        for _ in range(n_corrector):
            _, eps = x0_eps(field, x, g, i, cond)
            score = -eps / g.sigma[i]
            z = _noise(x, generator)
            # batch-mean norms, as in Song et al.'s reference: one step size for the batch
            z_norm = float(z.flatten(1).norm(dim=1).mean())
            s_norm = max(float(score.flatten(1).norm(dim=1).mean()), 1e-30)
            step = 2.0 * (snr * z_norm / s_norm) ** 2
            x = x + step * score + math.sqrt(2.0 * step) * z
        x, mean, x0 = _sde_step(field, x, g, i, cond, generator)
        if i == len(g) - 2:
            x = mean
        report(callback, i, g, x, x0)
    return x


def sample_edm_heun(
    field,
    x_init,
    ts,
    *,
    generator=None,
    callback=None,
    cond=None,
    churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
):
    """EDM's Heun sampler (Karras et al. 2022, Alg. 2) in ``x_tilde = x / alpha``,
    ``sigma_tilde = sigma / alpha``, where the ODE is ``dx_tilde / dsigma_tilde = eps_hat``.

    ``churn = S_churn`` adds noise raising ``sigma_tilde`` by ``gamma = min(S_churn / N,
    sqrt(2) - 1)`` when ``s_tmin <= sigma_tilde <= s_tmax``. The step to ``sigma = 0`` is a
    single Euler step (as in EDM). 2 NFE per step (1 for the last).
    """
    if churn < 0 or s_noise < 0:
        raise ValueError("churn and s_noise must be >= 0")
    x, ts, g = setup(field, x_init, ts)
    n = len(g) - 1
    gamma_max = min(churn / n, math.sqrt(2.0) - 1.0)
    xt = x / g.alpha[0]
    for i in range(n):
        st, st_n = g.sigma[i] / g.alpha[i], g.sigma[i + 1] / g.alpha[i + 1]
        gamma = gamma_max if s_tmin <= st <= s_tmax else 0.0
        if gamma > 0.0:
            st_hat = st * (1.0 + gamma)
            xt = xt + math.sqrt(st_hat**2 - st**2) * s_noise * _noise(xt, generator)
            t_hat = float(field.path.t_from_log_snr(torch.tensor(-2.0 * math.log(st_hat))))
            x0, d, v = at_time(field, v_alpha(field, t_hat) * xt, t_hat, cond)
        else:
            st_hat = st
            x0, d = x0_eps(field, g.alpha[i] * xt, g, i, cond)
        x_next = xt + (st_n - st_hat) * d
        if st_n > 0.0:
            _, d2 = x0_eps(field, g.alpha[i + 1] * x_next, g, i + 1, cond)
            x_next = xt + (st_n - st_hat) * 0.5 * (d + d2)
        xt = x_next
        report(callback, i, g, g.alpha[i + 1] * xt, x0)
    return g.alpha[-1] * xt


def v_alpha(field, t: float) -> float:
    """``alpha(t)`` as a float."""
    return GridValues.from_path(field.path, [t]).alpha[0]
