"""Score-matching objectives against closed forms (float64).

* exact SM (Eq. 7) with a linear score is minimised by the sample mean / inverse sample
  covariance (the loss is a convex quadratic in (A, c) for s(x) = c - A x);
* sliced SM is an unbiased estimate of the exact objective;
* DSM (Eq. 28-29) recovers the score of the noised Gaussian, 1 / (s^2 + sigma^2);
* the path DSM loss (Eq. 44) of the exact (oracle) field equals the posterior variance of eps;
* the DDPM bound (Eq. 38): Gaussian KLs, posterior coefficients (survey below Eq. 38), the
  one-step estimate is unbiased and the bound tightens towards -log p as N grows.
"""

from __future__ import annotations

import math

import pytest
import torch

from probpath.paths.affine import AffinePath
from probpath.paths.oracle import GaussianMixtureOracle
from probpath.score.objectives import (
    ddpm_vlb,
    ddpm_vlb_loss,
    ddpm_vlb_terms,
    denoising_score_matching_loss,
    eps_weight,
    exact_score_matching_loss,
    gaussian_kl,
    ncsn_sigmas,
    posterior_coefficients,
    sliced_score_matching_loss,
    weighted_dsm_loss,
)

DT = torch.float64


def _gaussian_data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = torch.tensor([[1.0, 0.0], [0.6, 0.5]], dtype=DT)
    return torch.randn(n, 2, generator=g, dtype=DT) @ L.T + torch.tensor([1.0, -2.0], dtype=DT)


def _fit_linear_score(loss_fn, x, iters=50):
    """Minimise mean loss over s(x) = c - x A^T with LBFGS; return (A, c)."""
    A = torch.eye(2, dtype=DT, requires_grad=True)
    c = torch.zeros(2, dtype=DT, requires_grad=True)
    opt = torch.optim.LBFGS(
        [A, c],
        max_iter=iters,
        tolerance_grad=1e-12,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = loss_fn(lambda z: c - z @ A.T, x).mean()
        loss.backward()
        return loss

    opt.step(closure)
    return A.detach(), c.detach()


def test_exact_sm_linear_optimum_is_inverse_covariance():
    x = _gaussian_data(500)
    A, c = _fit_linear_score(exact_score_matching_loss, x)
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / len(x)
    torch.testing.assert_close(A, torch.linalg.inv(cov), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(c, A @ mean, rtol=1e-6, atol=1e-6)


def test_exact_sm_value_of_linear_score():
    # s(x) = -A x: trace term is -tr(A), quadratic 1/2 ||A x||^2.
    A = torch.tensor([[2.0, 0.3], [0.1, 1.0]], dtype=DT)
    x = _gaussian_data(7)
    out = exact_score_matching_loss(lambda z: -z @ A.T, x)
    torch.testing.assert_close(out, -torch.trace(A) + 0.5 * ((x @ A.T) ** 2).sum(1))


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
@pytest.mark.parametrize("vr", [False, True])
def test_sliced_sm_is_unbiased(noise, vr):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    net = net.to(DT)
    x = _gaussian_data(3)
    exact = exact_score_matching_loss(net, x)
    k = 4000
    reps = sliced_score_matching_loss(
        net,
        x.repeat_interleave(k, 0),
        noise=noise,
        variance_reduction=vr,
        generator=torch.Generator().manual_seed(1),
    ).reshape(3, k)
    se = reps.std(1) / math.sqrt(k)
    assert ((reps.mean(1) - exact).abs() < 4 * se + 1e-12).all()


def test_sliced_sm_learns_gaussian_score():
    x = _gaussian_data(2000)

    def loss(fn, z):  # fixed projections -> a deterministic objective for LBFGS
        g = torch.Generator().manual_seed(0)
        return sliced_score_matching_loss(fn, z, n_projections=8, generator=g)

    A, c = _fit_linear_score(loss, x, iters=100)
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / len(x)
    prec = torch.linalg.inv(cov)
    assert torch.linalg.norm(A - prec) / torch.linalg.norm(prec) < 0.1
    assert torch.linalg.norm(c - A @ mean) < 0.2


def test_dsm_recovers_noised_score():
    g = torch.Generator().manual_seed(0)
    s2, sigma = 0.5**2, 0.3
    x = torch.randn(20000, 2, generator=g, dtype=DT) * 0.5 + 1.0
    a = torch.ones((), dtype=DT, requires_grad=True)
    b = torch.zeros(2, dtype=DT, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], max_iter=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        gen = torch.Generator().manual_seed(1)
        loss = denoising_score_matching_loss(lambda z: -a * (z - b), x, sigma, generator=gen)
        loss.mean().backward()
        return loss.mean()

    opt.step(closure)
    assert abs(a.item() - 1 / (s2 + sigma**2)) < 0.03 / (s2 + sigma**2)
    torch.testing.assert_close(b.detach(), torch.ones(2, dtype=DT), atol=0.02, rtol=0)


def test_ncsn_sigmas_geometric():
    s = ncsn_sigmas(0.01, 10.0, 4)
    assert s[0] == pytest.approx(10.0) and s[-1] == pytest.approx(0.01)
    ratios = s[:-1] / s[1:]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 10.0))
    with pytest.raises(ValueError, match="sigma_min"):
        ncsn_sigmas(1.0, 0.1, 3)


def _oracle(path, var=0.7):
    return GaussianMixtureOracle(
        torch.ones(1, dtype=DT),
        torch.zeros(1, 2, dtype=DT),
        var * torch.eye(2, dtype=DT)[None],
        path,
    )


@pytest.mark.parametrize("schedule", ["vp", "ve", "linear", "ddpm"])
def test_path_dsm_of_exact_field_is_posterior_variance(schedule):
    # x0 ~ N(0, c I): E||eps - E[eps|x_t]||^2 / d = alpha^2 c / (alpha^2 c + sigma^2).
    path, c = AffinePath(schedule), 0.7
    field = _oracle(path, c)
    n = 20000
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=DT) * math.sqrt(c)
    t = torch.full((n,), 0.3, dtype=DT)
    loss = weighted_dsm_loss(field, x0, t, generator=torch.Generator().manual_seed(1))
    v = path(torch.tensor(0.3, dtype=DT))
    expect = v.alpha**2 * c / (v.alpha**2 * c + v.sigma**2)
    se = loss.std() / math.sqrt(n)
    assert abs(loss.mean() - expect) < 4 * se
    # weights multiply the per-sample loss
    w = torch.full((n,), 2.0, dtype=DT)
    g = torch.Generator().manual_seed(1)
    torch.testing.assert_close(weighted_dsm_loss(field, x0, t, weight=w, generator=g), 2 * loss)


def test_eps_weights_closed_form_vp():
    path = AffinePath("vp")
    t = torch.tensor([0.1, 0.5, 0.9], dtype=DT)
    beta = 0.1 + t * (20.0 - 0.1)
    sigma2 = 1 - torch.exp(-(0.1 * t + 0.5 * (20.0 - 0.1) * t**2))
    torch.testing.assert_close(eps_weight("likelihood", t, path), beta / sigma2)
    torch.testing.assert_close(eps_weight("uniform", t, path), 1 / sigma2)
    torch.testing.assert_close(eps_weight("score", t, path), torch.ones_like(t))
    with pytest.raises(ValueError, match="weighting"):
        eps_weight("nope", t, path)


def test_gaussian_kl_matches_torch():
    g = torch.Generator().manual_seed(0)
    mq, mp = torch.randn(4, 3, generator=g, dtype=DT), torch.randn(4, 3, generator=g, dtype=DT)
    vq, vp = torch.rand(4, generator=g, dtype=DT) + 0.1, torch.rand(4, generator=g, dtype=DT) + 0.1
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mq, vq.sqrt()[:, None]),
        torch.distributions.Normal(mp, vp.sqrt()[:, None]),
    ).sum(1)
    torch.testing.assert_close(gaussian_kl(mq, vq, mp, vp), ref)


def test_posterior_coefficients_match_ddpm_formulas():
    path = AffinePath("ddpm")
    sched = path.schedule
    n = sched.num_steps
    i = torch.tensor([2, 10, 500, 1000])
    beta = sched.betas[i - 1]
    ab = sched.alpha_bar()
    ab_t, ab_s = ab[i - 1], ab[i - 2]
    post = posterior_coefficients(path, i.to(DT) / n, (i - 1).to(DT) / n)
    torch.testing.assert_close(post.var_step, beta)
    torch.testing.assert_close(post.alpha_step, torch.sqrt(1 - beta))
    torch.testing.assert_close(post.c_x0, ab_s.sqrt() * beta / (1 - ab_t))
    torch.testing.assert_close(post.c_xt, (1 - beta).sqrt() * (1 - ab_s) / (1 - ab_t))
    torch.testing.assert_close(post.var_posterior, (1 - ab_s) / (1 - ab_t) * beta)


def _short_ddpm(n):
    return AffinePath("ddpm", num_steps=n, beta_start=1e-3, beta_end=min(0.5, 20.0 / n))


def test_vlb_one_step_estimate_is_unbiased():
    n = 20
    field = _oracle(_short_ddpm(n), 0.5)
    x0 = torch.randn(1, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    full = ddpm_vlb(field, x0.repeat(4000, 1), n, generator=torch.Generator().manual_seed(1))
    est = ddpm_vlb_loss(field, x0.repeat(40000, 1), n, generator=torch.Generator().manual_seed(2))
    se = est.std() / math.sqrt(len(est)) + full.total.std() / math.sqrt(4000)
    assert abs(est.mean() - full.total.mean()) < 4 * se


def test_vlb_bounds_nll_and_tightens_with_steps():
    c = 0.5
    x0 = torch.randn(3000, 2, generator=torch.Generator().manual_seed(0), dtype=DT) * math.sqrt(c)
    nll = (0.5 * (x0**2).sum(1) / c + math.log(2 * math.pi * c)).mean()
    gaps = []
    for n in (10, 100):
        field = _oracle(_short_ddpm(n), c)
        terms = ddpm_vlb(field, x0, n, generator=torch.Generator().manual_seed(1))
        gap = terms.total.mean() - nll
        se = terms.total.std() / math.sqrt(len(x0))
        assert gap > -4 * se, f"the bound is below -log p at N={n}"
        gaps.append(gap.item())
        bpd = terms.bits_per_dim(2)
        torch.testing.assert_close(bpd, terms.total / (2 * math.log(2)))
    assert gaps[1] < gaps[0]


def test_vlb_term_errors():
    field = _oracle(_short_ddpm(10))
    x0 = torch.zeros(2, 2, dtype=DT)
    with pytest.raises(ValueError, match="1..10"):
        ddpm_vlb_terms(field, x0, torch.tensor([0, 3]), 10)
    with pytest.raises(ValueError, match="variance"):
        ddpm_vlb_terms(field, x0, torch.tensor([1, 3]), 10, variance="huge")
