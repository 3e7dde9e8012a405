"""Score-matching objectives (survey §2): exact and sliced SM, DSM, NCSN, DDPM and score SDEs.

Two families live here:

* objectives of a plain score function ``score_fn(x) -> (batch, *event)`` — exact (implicit)
  score matching (Eq. 7), sliced score matching and denoising score matching at one noise
  level (Eq. 28-29);
* objectives of a :class:`~probpath.paths.field.Field` on an affine path
  ``x_t = alpha_t x0 + sigma_t eps`` — the weighted continuous DSM of score SDEs (Eq. 44),
  which with a geometric ``sigma`` grid and ``lambda = sigma^2`` is NCSN's loss (Eq. 33) and
  with ``lambda = sigma^2`` on the DDPM schedule is ``L_simple`` (Eq. 41), plus the DDPM
  variational bound (Eq. 38) with closed-form Gaussian KLs.

Per-sample losses have shape ``(batch,)``. ``reduction="mean"`` averages squared errors over
the event dimensions (the usual implementation), ``"sum"`` gives the survey's squared norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from probpath.core.broadcast import append_dims
from probpath.core.validation import check_choice, check_positive_int
from probpath.paths.field import Field
from probpath.paths.parameterization import Prediction

__all__ = [
    "exact_score_matching_loss",
    "sliced_score_matching_loss",
    "denoising_score_matching_loss",
    "ncsn_sigmas",
    "WEIGHTINGS",
    "eps_weight",
    "weighted_dsm_loss",
    "VLBTerms",
    "gaussian_kl",
    "Posterior",
    "posterior_coefficients",
    "ddpm_vlb_terms",
    "ddpm_vlb",
    "ddpm_vlb_loss",
]


def _reduce(sq: torch.Tensor, reduction: str) -> torch.Tensor:
    flat = sq.reshape(sq.shape[0], -1)
    return flat.mean(1) if reduction == "mean" else flat.sum(1)


# --------------------------------------------------------------------------------------------
# Objectives of a plain score function s(x)
# --------------------------------------------------------------------------------------------


def exact_score_matching_loss(score_fn, x: torch.Tensor) -> torch.Tensor:
    """Hyvärinen's implicit score matching with the exact Jacobian trace (survey §2.1, Eq. 7).

    ``J(x) = tr(d s(x) / dx) + 1/2 ||s(x)||^2``; its expectation equals the Fisher divergence
    ``1/2 E ||s - grad log p||^2`` up to a constant (the survey writes an extra overall factor
    1/2, which does not move the minimiser). The trace costs one backward pass per dimension,
    so use it for small ``d``; :func:`sliced_score_matching_loss` scales to large ``d``.

    Args:
        score_fn: ``(batch, *event) -> (batch, *event)``, differentiable.
        x: data ``(batch, *event)``.

    Returns:
        ``(batch,)``, differentiable with respect to ``score_fn``'s parameters.
    """
    x = x.detach().requires_grad_(True)
    s = score_fn(x)
    flat_s = s.reshape(s.shape[0], -1)
    trace = torch.zeros(x.shape[0], dtype=s.dtype, device=s.device)
    for i in range(flat_s.shape[1]):
        (g,) = torch.autograd.grad(flat_s[:, i].sum(), x, create_graph=True)
        trace = trace + g.reshape(g.shape[0], -1)[:, i]
    return trace + 0.5 * (flat_s**2).sum(1)


def sliced_score_matching_loss(
    score_fn,
    x: torch.Tensor,
    *,
    n_projections: int = 1,
    noise: str = "gaussian",
    variance_reduction: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sliced score matching (Song et al. 2019; survey §2.3): Eq. 7 with random projections.

    ``J(x) = E_v[v^T (ds/dx) v + 1/2 (v^T s)^2]``, or with ``variance_reduction`` (SSM-VR)
    ``E_v[v^T (ds/dx) v] + 1/2 ||s||^2``; one backward pass per projection instead of ``d``.
    With Gaussian or Rademacher ``v`` (``E[v v^T] = I``) the expectation equals Eq. 7's
    integrand exactly.

    Args:
        score_fn: ``(batch, *event) -> (batch, *event)``.
        x: ``(batch, *event)``.
        n_projections: projections per sample (averaged).
        noise: ``"gaussian"`` or ``"rademacher"`` projections.
        variance_reduction: use the closed-form ``1/2 ||s||^2`` term.
        generator: for the projections.

    Returns:
        ``(batch,)``.
    """
    n_projections = check_positive_int(n_projections, "n_projections")
    check_choice(noise, "noise", ("gaussian", "rademacher"))
    b = x.shape[0]
    xr = x.detach().repeat_interleave(n_projections, dim=0).requires_grad_(True)
    v = torch.randn(xr.shape, generator=generator, dtype=xr.dtype, device=xr.device)
    if noise == "rademacher":
        v = v.sign()
    s = score_fn(xr)
    sv = (s * v).reshape(s.shape[0], -1).sum(1)
    (g,) = torch.autograd.grad(sv.sum(), xr, create_graph=True)
    vjv = (g * v).reshape(g.shape[0], -1).sum(1)
    if variance_reduction:
        quad = 0.5 * (s.reshape(s.shape[0], -1) ** 2).sum(1)
    else:
        quad = 0.5 * sv**2
    return (vjv + quad).reshape(b, n_projections).mean(1)


def denoising_score_matching_loss(
    score_fn,
    x: torch.Tensor,
    sigma: float,
    *,
    generator: torch.Generator | None = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """Denoising score matching at one noise level (Vincent 2011; survey §2.2, Eq. 28-29).

    ``x_tilde = x + sigma z``; ``J = 1/2 ||s(x_tilde) - (x - x_tilde) / sigma^2||^2``, whose
    minimiser is the score of the noised data ``q_sigma``.

    Args:
        score_fn: ``(batch, *event) -> (batch, *event)``.
        x: clean data ``(batch, *event)``.
        sigma: noise standard deviation (> 0).
        generator: for ``z``.
        reduction: ``"sum"`` (Eq. 28) or ``"mean"`` over event dimensions.

    Returns:
        ``(batch,)``.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    check_choice(reduction, "reduction", ("sum", "mean"))
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    x_tilde = x + sigma * z
    target = (x - x_tilde) / sigma**2  # Eq. 29
    return 0.5 * _reduce((score_fn(x_tilde) - target) ** 2, reduction)


# --------------------------------------------------------------------------------------------
# Objectives of a field on an affine path
# --------------------------------------------------------------------------------------------


def ncsn_sigmas(sigma_min: float, sigma_max: float, num_scales: int) -> torch.Tensor:
    """NCSN's geometric noise levels ``sigma_1 > ... > sigma_L`` (survey §2.3), float64.

    >>> ncsn_sigmas(0.01, 1.0, 3).tolist()
    [1.0, 0.1, 0.01]
    """
    num_scales = check_positive_int(num_scales, "num_scales")
    if not 0 < sigma_min < sigma_max:
        raise ValueError("need 0 < sigma_min < sigma_max, e.g. sigma_min=0.01, sigma_max=10")
    if num_scales == 1:
        return torch.tensor([float(sigma_max)], dtype=torch.float64)
    return torch.logspace(
        math.log10(sigma_max), math.log10(sigma_min), num_scales, dtype=torch.float64
    )


WEIGHTINGS = ("score", "likelihood", "uniform")


def eps_weight(weighting: str, t: torch.Tensor, path) -> torch.Tensor:
    """The weight on ``||eps_hat - eps||^2`` equivalent to ``lambda(t)`` in Eq. 44.

    With ``s = -eps/sigma``, ``lambda ||s_theta - grad log p_0t||^2 = (lambda / sigma^2)
    ||eps_hat - eps||^2``. The usual choices of ``lambda``:

    * ``"score"``: ``lambda = sigma_t^2`` (Song et al. 2021; NCSN's Eq. 33 weighting,
      DDPM's ``L_simple``) -> weight 1;
    * ``"likelihood"``: ``lambda = g(t)^2`` (Song et al. 2021, "maximum likelihood
      training"): the loss bounds the negative log-likelihood -> ``g^2 / sigma^2``;
    * ``"uniform"``: ``lambda = 1`` -> ``1 / sigma^2`` (large at small noise).

    Args:
        weighting: one of :data:`WEIGHTINGS`.
        t: ``(batch,)``.
        path: the :class:`~probpath.paths.affine.AffinePath`.

    Returns:
        ``(batch,)``.
    """
    check_choice(weighting, "weighting", WEIGHTINGS)
    if weighting == "score":
        return torch.ones_like(t)
    sigma = path(t).sigma
    if weighting == "uniform":
        return 1.0 / sigma**2
    _, g = path.sde_coefficients(t)
    return g**2 / sigma**2


def weighted_dsm_loss(
    field: Field,
    x0: torch.Tensor,
    t: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Weighted denoising score matching on a path (survey Eq. 44), in noise units.

    ``x_t = alpha_t x0 + sigma_t eps`` and ``loss = w(t) ||eps_hat(x_t, t) - eps||^2``, the
    field's prediction converted to ``eps`` by the hub (so a network predicting the score,
    ``x0``, ``v`` or the velocity is trained by the same line). Special cases: DDPM's
    ``L_simple`` (Eq. 41: DDPM schedule, ``t = i / N``, ``w = 1``), NCSN (Eq. 33: VE schedule on
    a geometric grid, ``lambda = sigma^2`` i.e. ``w = 1``, times the survey's 1/2), score SDEs
    with the weights of :func:`eps_weight`.

    Args:
        field: the model's field.
        x0: data ``(batch, *event)``.
        t: times ``(batch,)``.
        weight: ``w(t)`` ``(batch,)`` (1 when ``None``).
        eps: the noise (drawn with ``generator`` when ``None``).
        cond: labels for conditional fields.
        reduction: ``"mean"`` or ``"sum"`` over event dimensions.

    Returns:
        ``(batch,)``.
    """
    check_choice(reduction, "reduction", ("sum", "mean"))
    ps = field.path.sample(x0, t, eps=eps, generator=generator)
    eps_hat = field.predict(ps.x_t, t, as_=Prediction.EPS, cond=cond)
    loss = _reduce((eps_hat - ps.eps) ** 2, reduction)
    return loss if weight is None else weight * loss


# --------------------------------------------------------------------------------------------
# The DDPM variational bound (Eq. 36-38), on any affine path discretised into N steps
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VLBTerms:
    """The terms of Eq. (38) in nats, each ``(batch,)``.

    Attributes:
        prior: ``L_T = KL(q(x_T | x0) || p(x_T))``.
        diffusion: ``sum_{t > 1} L_{t-1}`` (KLs between Gaussian posteriors and the model).
        decoder: ``L_0 = -log p_theta(x0 | x_1)``.
        total: their sum, an upper bound on ``-log p_theta(x0)``.
    """

    prior: torch.Tensor
    diffusion: torch.Tensor
    decoder: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.prior + self.diffusion + self.decoder

    def bits_per_dim(self, dim: int) -> torch.Tensor:
        """``total / (dim ln 2)`` (for ``dim`` values per sample)."""
        return self.total / (dim * math.log(2.0))


def gaussian_kl(
    mean_q: torch.Tensor, var_q: torch.Tensor, mean_p: torch.Tensor, var_p: torch.Tensor
) -> torch.Tensor:
    """``KL(N(mean_q, var_q I) || N(mean_p, var_p I))`` summed over event dims -> ``(batch,)``.

    ``var_q`` and ``var_p`` are ``(batch,)`` (isotropic); ``mean_*`` are ``(batch, *event)``.
    """
    d = mean_q[0].numel()
    sq = ((mean_q - mean_p) ** 2).reshape(mean_q.shape[0], -1).sum(1)
    return 0.5 * (d * (torch.log(var_p / var_q) + var_q / var_p - 1.0) + sq / var_p)


@dataclass(frozen=True)
class Posterior:
    """Coefficients of one forward step ``s -> t`` and its Gaussian posterior, each ``(batch,)``.

    ``q(x_t | x_s) = N(alpha_{t|s} x_s, var_step)`` and
    ``q(x_s | x_t, x0) = N(c_xt x_t + c_x0 x0, var_posterior)``.
    """

    alpha_step: torch.Tensor
    var_step: torch.Tensor
    c_xt: torch.Tensor
    c_x0: torch.Tensor
    var_posterior: torch.Tensor


def posterior_coefficients(path, t: torch.Tensor, s: torch.Tensor) -> Posterior:
    """The forward step from ``s`` to ``t > s`` on ``path`` and the posterior ``q(x_s|x_t, x0)``.

    ``alpha_{t|s} = alpha_t / alpha_s``, ``var_step = sigma_t^2 - alpha_{t|s}^2 sigma_s^2``;
    ``c_xt = alpha_{t|s} sigma_s^2 / sigma_t^2``, ``c_x0 = alpha_s var_step / sigma_t^2``,
    ``var_posterior = var_step sigma_s^2 / sigma_t^2`` (Kingma et al. 2021). On the DDPM
    schedule these are ``sqrt(1 - beta_t)``, ``beta_t`` and the survey's ``mu_tilde``,
    ``beta_tilde`` below Eq. (38).

    Args:
        path: an :class:`~probpath.paths.affine.AffinePath`.
        t, s: times ``(batch,)`` with ``s < t``.
    """
    vt, vs = path(t), path(s)
    a_ts = vt.alpha / vs.alpha
    var_step = vt.sigma**2 - a_ts**2 * vs.sigma**2
    return Posterior(
        alpha_step=a_ts,
        var_step=var_step,
        c_xt=a_ts * vs.sigma**2 / vt.sigma**2,
        c_x0=vs.alpha * var_step / vt.sigma**2,
        var_posterior=var_step * vs.sigma**2 / vt.sigma**2,
    )


def _check_vlb_args(num_steps: int, variance: str) -> int:
    check_choice(variance, "variance", ("small", "large"))
    n = check_positive_int(num_steps, "num_steps")
    if n < 2:
        raise ValueError(f"num_steps must be >= 2 for the variational bound, got {n}")
    return n


def ddpm_vlb_terms(
    field: Field,
    x0: torch.Tensor,
    i: torch.Tensor,
    num_steps: int,
    *,
    variance: str = "small",
    eps: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One term ``L_{i-1}`` of Eq. (38) per sample, at step ``i`` in ``1..N`` (``t = i / N``).

    The forward chain is the path at ``t_i = i / N``; its steps are Gaussian with
    ``alpha_{t|s} = alpha_t / alpha_s`` and ``sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2
    sigma_s^2`` (for DDPM these are ``sqrt(1 - beta_i)`` and ``beta_i``, Eq. 34). The posterior
    ``q(x_s | x_t, x0) = N(mu_tilde, beta_tilde)`` has (survey, below Eq. 38)
    ``mu_tilde = alpha_{t|s} sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_{t|s}^2 / sigma_t^2 x0``
    and ``beta_tilde = sigma_{t|s}^2 sigma_s^2 / sigma_t^2``. The model's step has mean
    ``mu_tilde(x_t, x0_hat)`` and variance ``beta_tilde`` (``variance="small"``) or
    ``sigma_{t|s}^2`` (``"large"``, DDPM's ``beta_t``), so ``L_{i-1}`` is a closed-form Gaussian
    KL. At ``i = 1`` the term is the decoder ``-log N(x0; x0_hat(x_1), sigma_1^2 / alpha_1^2)``
    (for DDPM ``beta_1 / (1 - beta_1)``, within ``O(beta_1^2)`` of Ho et al.'s ``beta_1``).

    Args:
        field: the model's field (any native prediction; read as ``x0_hat``).
        x0: data ``(batch, *event)``.
        i: steps ``(batch,)`` (long, in ``1..num_steps``).
        num_steps: ``N``.
        variance: the reverse-step variance, ``"small"`` or ``"large"``.
        eps: noise for ``x_t`` (drawn when ``None``).

    Returns:
        ``(batch,)`` in nats.
    """
    n = _check_vlb_args(num_steps, variance)
    i = i.to(x0.device)
    if i.shape != x0.shape[:1] or (i < 1).any() or (i > n).any():
        raise ValueError(f"i must have shape (batch,) with values in 1..{n}")
    t = i.to(x0.dtype) / n
    s = (i - 1).to(x0.dtype) / n
    ps = field.path.sample(x0, t, eps=eps, generator=generator)
    x0_hat = field.predict(ps.x_t, t, as_=Prediction.X0, cond=cond)
    post = posterior_coefficients(field.path, t, s)
    c_xt, c_x0 = append_dims(post.c_xt, x0), append_dims(post.c_x0, x0)
    var_post = post.var_posterior
    var_model = var_post if variance == "small" else post.var_step
    a_t, sig_t = ps.alpha, ps.sigma
    first = i == 1
    # Decoder term (i = 1): -log N(x0; x0_hat, sigma_1^2 / alpha_1^2), summed over dims.
    d = x0[0].numel()
    var_dec = sig_t**2 / a_t**2
    sq = ((x0 - x0_hat) ** 2).reshape(x0.shape[0], -1).sum(1)
    decoder = 0.5 * (sq / var_dec + d * torch.log(2 * math.pi * var_dec))
    # KL term (i > 1); guard the posterior variance at i = 1 (unused there) against 0 / 0.
    safe_post = torch.where(first, torch.ones_like(var_post), var_post)
    safe_model = torch.where(first, torch.ones_like(var_model), var_model)
    mean_q = c_xt * ps.x_t + c_x0 * x0
    mean_p = c_xt * ps.x_t + c_x0 * x0_hat
    kl = gaussian_kl(mean_q, safe_post, mean_p, safe_model)
    return torch.where(first, decoder, kl)


def _prior_kl(path, x0: torch.Tensor) -> torch.Tensor:
    """``L_T = KL(N(alpha_1 x0, sigma_1^2) || N(0, prior_std^2))`` -> ``(batch,)``."""
    one = torch.ones(x0.shape[0], dtype=x0.dtype, device=x0.device)
    v = path(one)
    p2 = torch.full_like(one, path.schedule.prior_std**2)
    return gaussian_kl(append_dims(v.alpha, x0) * x0, v.sigma**2, torch.zeros_like(x0), p2)


@torch.no_grad()
def ddpm_vlb(
    field: Field,
    x0: torch.Tensor,
    num_steps: int = 1000,
    *,
    variance: str = "small",
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> VLBTerms:
    """The full variational bound of Eq. (38), every step evaluated (``N`` network calls).

    Args:
        field: the model's field.
        x0: data ``(batch, *event)``.
        num_steps: ``N``; for a discrete DDPM schedule use its own ``num_steps``.
        variance: ``"small"`` or ``"large"`` reverse variance.
        generator: for the noise of each step.

    Returns:
        :class:`VLBTerms` (nats per sample; ``.bits_per_dim(d)`` for bits/dim).
    """
    n = _check_vlb_args(num_steps, variance)
    b = x0.shape[0]
    diffusion = torch.zeros(b, dtype=x0.dtype, device=x0.device)
    decoder = diffusion
    for step in range(1, n + 1):
        i = torch.full((b,), step, dtype=torch.long, device=x0.device)
        term = ddpm_vlb_terms(field, x0, i, n, variance=variance, cond=cond, generator=generator)
        if step == 1:
            decoder = term
        else:
            diffusion = diffusion + term
    return VLBTerms(prior=_prior_kl(field.path, x0), diffusion=diffusion, decoder=decoder)


def ddpm_vlb_loss(
    field: Field,
    x0: torch.Tensor,
    num_steps: int = 1000,
    *,
    variance: str = "small",
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """An unbiased one-step estimate of Eq. (38): ``L_T + N * L_{i-1}``, ``i ~ U{1..N}``.

    Its expectation over ``i`` is the full bound of :func:`ddpm_vlb` (nats, ``(batch,)``).
    """
    n = _check_vlb_args(num_steps, variance)
    i = torch.randint(1, n + 1, (x0.shape[0],), generator=generator, device=x0.device)
    term = ddpm_vlb_terms(field, x0, i, n, variance=variance, cond=cond, generator=generator)
    return _prior_kl(field.path, x0) + n * term
