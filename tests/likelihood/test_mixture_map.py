"""MAP-EM with Dirichlet and Normal-inverse-Wishart priors (end of survey §1.1)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from probpath.likelihood.em import ConvergenceWarning
from probpath.likelihood.mixture import GaussianMixture

D = 3
PRIOR = {
    "weight_concentration": 3.0,
    "mean_precision": 2.0,
    "mean": [1.0, -1.0, 0.5],
    "covariance": np.diag([2.0, 1.0, 0.5]) + 0.1,
    "degrees_of_freedom": 6.0,
}


def _data(n=40, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(n, D) @ np.array([[1.0, 0.3, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 0.5]]) + 2.0


def _closed_form(x):
    """Posterior mode of NIW(m0, κ0, Ψ0, ν0) given one Gaussian's data (hand-derived):
    m_N = (κ0 m0 + N x̄)/(κ0 + N); Σ = (Ψ0 + S + κ0 N/(κ0+N)(x̄-m0)(x̄-m0)^T)/(ν0 + N + d + 2)."""
    n = len(x)
    m0, k0 = np.array(PRIOR["mean"]), PRIOR["mean_precision"]
    psi, nu = PRIOR["covariance"], PRIOR["degrees_of_freedom"]
    xbar = x.mean(0)
    s = (x - xbar).T @ (x - xbar)
    mean = (k0 * m0 + n * xbar) / (k0 + n)
    cov = (psi + s + k0 * n / (k0 + n) * np.outer(xbar - m0, xbar - m0)) / (nu + n + D + 2)
    return mean, cov


def _fit_one(x, ct="full"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(
            1, covariance_type=ct, prior=PRIOR, reg_covar=0.0, tol=0, max_iter=3
        ).fit(x)


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_one_component_map_matches_closed_form(ct):
    x = _data()
    gm = _fit_one(x, ct)
    mean, cov = _closed_form(x)
    np.testing.assert_allclose(np.asarray(gm.means_[0]), mean, rtol=1e-12)
    want = {
        "full": cov[None],
        "tied": cov,
        "diag": np.diag(cov)[None],
        "spherical": np.array([np.trace(cov) / D]),
    }[ct]
    np.testing.assert_allclose(np.asarray(gm.covariances_), want, rtol=1e-12)
    assert float(gm.weights_[0]) == 1.0


def _log_posterior(mu, sigma, x):
    """ln p(X|μ,Σ) + ln N(μ | m0, Σ/κ0) + ln IW(Σ | Ψ0, ν0), written with torch.distributions."""
    x = torch.as_tensor(x)
    m0 = torch.tensor(PRIOR["mean"], dtype=torch.float64)
    psi = torch.as_tensor(PRIOR["covariance"])
    nu, k0 = PRIOR["degrees_of_freedom"], PRIOR["mean_precision"]
    lik = MultivariateNormal(mu, sigma).log_prob(x).sum()
    mean_prior = MultivariateNormal(m0, sigma / k0).log_prob(mu)
    inv_wishart = -(nu + D + 1) / 2 * torch.logdet(sigma) - 0.5 * torch.trace(
        psi @ torch.linalg.inv(sigma)
    )
    return lik + mean_prior + inv_wishart


def test_map_is_a_stationary_point_of_the_log_posterior():
    """Independent of the closed form: the gradient of the log posterior vanishes there."""
    x = _data(seed=1)
    gm = _fit_one(x)
    mu = torch.tensor(gm.means_[0]).requires_grad_(True)  # NumPy in (x), NumPy out
    a = torch.tensor(gm.covariances_[0]).requires_grad_(True)
    lp = _log_posterior(mu, 0.5 * (a + a.T), x)
    g_mu, g_a = torch.autograd.grad(lp, (mu, a))
    assert g_mu.abs().max() < 1e-9 and g_a.abs().max() < 1e-9
    # and it is a maximum: small perturbations lower the log posterior
    base = float(lp.detach())
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        dm = 1e-3 * torch.randn(D, generator=gen, dtype=torch.float64)
        da = 1e-3 * torch.randn(D, D, generator=gen, dtype=torch.float64)
        s = torch.tensor(gm.covariances_[0]) + 0.5 * (da + da.T)
        assert float(_log_posterior(torch.tensor(gm.means_[0]) + dm, s, x)) < base


def test_dirichlet_prior_on_weights():
    """Separated clusters (hard responsibilities): π_k = (N_k + α - 1) / (N + K(α - 1))."""
    rng = np.random.RandomState(0)
    x = np.r_[rng.randn(30, 2) * 0.1, rng.randn(70, 2) * 0.1 + 50]
    alpha = 5.0
    gm = GaussianMixture(2, prior={"weight_concentration": alpha}, random_state=0).fit(x)
    got = np.sort(np.asarray(gm.weights_))
    want = np.array([30 + alpha - 1, 70 + alpha - 1]) / (100 + 2 * (alpha - 1))
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_map_objective_never_decreases(ct):
    rng = np.random.RandomState(3)
    x = np.r_[rng.randn(60, D), rng.randn(60, D) + 3, rng.randn(60, D) - 3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(
            3,
            covariance_type=ct,
            prior=PRIOR,
            reg_covar=0.0,
            tol=0,
            max_iter=40,
            init_params="random",
            random_state=0,
        ).fit(x)
    b = np.array(gm.lower_bounds_)
    assert np.all(np.diff(b) >= -1e-10 * np.abs(b[1:]))
    assert math.isfinite(gm.lower_bound_)


def test_prior_validation():
    x = _data()
    with pytest.raises(ValueError, match="weight_concentration"):
        GaussianMixture(1, prior={"weight_concentration": 0.5}).fit(x)
    with pytest.raises(ValueError, match="degrees_of_freedom"):
        GaussianMixture(1, prior={"covariance": 1.0, "degrees_of_freedom": 1.0}).fit(x)
    with pytest.raises(ValueError, match="prior"):
        GaussianMixture(1, prior={"banana": 1.0}).fit(x)
