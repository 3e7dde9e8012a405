"""BayesianGaussianMixture vs scikit-learn and exact Bayes; MeanFieldVI vs closed forms (§1.1.5)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, multigammaln
from scipy.stats import multivariate_normal, multivariate_t
from sklearn.exceptions import NotFittedError
from sklearn.mixture import BayesianGaussianMixture as SkBGMM

from probpath.likelihood.variational import BayesianGaussianMixture, MeanFieldVI

COV_TYPES = ["full", "tied", "diag", "spherical"]
WEIGHT_PRIORS = ["dirichlet_process", "dirichlet_distribution"]


@pytest.fixture(scope="module")
def blobs():
    """Three anisotropic 3-D clusters (210 points, float64)."""
    rng = np.random.RandomState(0)
    return np.concatenate(
        [
            rng.randn(80, 3) + [4.0, 0.0, 0.0],
            rng.randn(60, 3) @ np.diag([1.0, 0.5, 2.0]),
            rng.randn(70, 3) - [0.0, 4.0, 1.0],
        ]
    )


def _fit_both(x, resp, **kw):
    """Fit scikit-learn's and probpath's models from the same initial responsibilities."""
    sk = SkBGMM(**kw)
    sk._initialize_parameters = lambda x_, rs, xp=None: sk._initialize(x_, resp)
    pp = BayesianGaussianMixture(**kw)
    pp._initialize = lambda x_, w, rng: pp._initialize_from_resp(x_, torch.from_numpy(resp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter may be reached on purpose
        sk.fit(x)
        pp.fit(x)
    return sk, pp


def _close(ours, theirs, rtol=1e-6):
    ours = ours.numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=rtol, atol=1e-10)


@pytest.mark.parametrize("prior", WEIGHT_PRIORS)
@pytest.mark.parametrize("cov", COV_TYPES)
def test_parity_with_sklearn_same_initial_resp(blobs, cov, prior):
    resp = np.random.RandomState(1).dirichlet(np.ones(5), size=len(blobs))
    kw = dict(
        n_components=5,
        covariance_type=cov,
        weight_concentration_prior_type=prior,
        max_iter=25,
        tol=1e-8,
    )
    sk, pp = _fit_both(blobs, resp, **kw)
    assert pp.n_iter_ == sk.n_iter_ and pp.converged_ == sk.converged_
    _close(pp.lower_bound_, sk.lower_bound_)
    _close(pp.lower_bounds_, np.ravel(sk.lower_bounds_))  # sklearn: (1,) arrays for tied
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        _close(getattr(pp, name), getattr(sk, name))
    for name in ("mean_precision_", "degrees_of_freedom_"):
        _close(getattr(pp, name), getattr(sk, name))
    conc = sk.weight_concentration_
    _close(pp.weight_concentration_, np.stack(conc) if prior == "dirichlet_process" else conc)
    _close(pp.score_samples(blobs), sk.score_samples(blobs))
    _close(pp.predict_proba(blobs), sk.predict_proba(blobs))
    np.testing.assert_array_equal(np.asarray(pp.predict(blobs)), sk.predict(blobs))


def test_parity_with_sklearn_custom_priors_and_default_init(blobs):
    """Every prior argument, and the default k-means initialisation from the same seed."""
    kw = dict(
        n_components=4,
        weight_concentration_prior=0.3,
        mean_precision_prior=0.5,
        mean_prior=[0.5, -0.5, 0.0],
        degrees_of_freedom_prior=5.0,
        covariance_prior=np.diag([2.0, 1.0, 0.5]),
        random_state=3,
        max_iter=300,
    )
    sk = SkBGMM(**kw).fit(blobs)
    pp = BayesianGaussianMixture(**kw).fit(blobs)
    assert pp.n_iter_ == sk.n_iter_
    _close(pp.lower_bound_, sk.lower_bound_)
    for name in ("weights_", "means_", "covariances_", "degrees_of_freedom_"):
        _close(getattr(pp, name), getattr(sk, name))


@pytest.mark.parametrize("prior", WEIGHT_PRIORS)
@pytest.mark.parametrize("cov", COV_TYPES)
def test_elbo_never_decreases(blobs, cov, prior):
    """Coordinate ascent: every iteration's ELBO >= the previous one (up to rounding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BayesianGaussianMixture(
            6,
            covariance_type=cov,
            weight_concentration_prior_type=prior,
            init_params="random",
            random_state=0,
            max_iter=30,
            tol=0,
        ).fit(blobs)
    lb = np.array(m.lower_bounds_)
    assert len(lb) == 30
    assert np.all(np.diff(lb) >= -1e-10 * np.abs(lb[1:]))


def test_elbo_is_exact_log_evidence_for_one_component(blobs):
    """With K = 1 and a Dirichlet prior, q(Z) is exact and q(mu, Lambda) is the exact
    Normal-Wishart posterior, so the ELBO equals ln p(X). We compute ln p(X) independently as
    the sum of sequential Student-t predictive log-densities (PRML Eq. 10.81, one point at a
    time) and check ``lower_bound_ + constant`` against it, where the constant is the one the
    class docstring documents: ``-N d/2 ln(2 pi) + K d/2 ln beta_0 + K ln B(W_0, nu_0)
    + K d(d-1)/4 ln(pi) + ln C(alpha_0)`` (``ln C(alpha_0) = 0`` for K = 1)."""
    x = blobs[:60]
    n, d = x.shape
    beta0, nu0 = 0.7, d + 1.5
    m0 = np.array([0.2, -0.1, 0.3])
    cov0 = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.5]])  # W_0^{-1}
    model = BayesianGaussianMixture(
        1,
        weight_concentration_prior_type="dirichlet_distribution",
        mean_precision_prior=beta0,
        mean_prior=m0.tolist(),
        degrees_of_freedom_prior=nu0,
        covariance_prior=cov0.tolist(),
        reg_covar=0.0,
        max_iter=3,
        tol=0,
    ).fit(x)
    # sequential predictive: p(x_n | x_<n) = St(m, ((nu+1-d) beta / (1+beta)) W, nu+1-d)
    log_evidence, m, beta, nu, w_inv = 0.0, m0.copy(), beta0, nu0, cov0.copy()
    for xi in x:
        df = nu + 1 - d
        shape = w_inv * (1 + beta) / (df * beta)  # inverse of the Student-t precision
        log_evidence += multivariate_t(loc=m, shape=shape, df=df).logpdf(xi)
        diff = xi - m
        w_inv = w_inv + beta / (beta + 1) * np.outer(diff, diff)
        m = (beta * m + xi) / (beta + 1)
        beta, nu = beta + 1, nu + 1
    log_b0 = 0.5 * nu0 * np.linalg.slogdet(cov0)[1] - 0.5 * nu0 * d * math.log(2.0)
    log_b0 -= multigammaln(0.5 * nu0, d)  # ln B(W_0, nu_0), W_0 = cov0^{-1}
    const = -0.5 * n * d * math.log(2 * math.pi) + 0.5 * d * math.log(beta0) + log_b0
    const += d * (d - 1) / 4 * math.log(math.pi)
    np.testing.assert_allclose(model.lower_bound_ + const, log_evidence, rtol=1e-9)


def test_unneeded_components_shrink(blobs):
    """Ten components on three clusters: seven get (almost) no weight under the DP prior."""
    m = BayesianGaussianMixture(10, random_state=0, max_iter=1000, tol=1e-6).fit(blobs)
    w = np.sort(np.asarray(m.weights_))[::-1]
    assert (w[:3] > 0.25).all()
    assert w[3:].sum() < 0.01
    # the surviving means sit at the three true centres
    centres = np.array([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, -4.0, -1.0]])
    big = np.asarray(m.means_)[np.asarray(m.weights_) > 0.25]
    dist = np.linalg.norm(big[:, None] - centres[None], axis=-1).min(0)
    assert (dist < 0.5).all()


def test_log_prob_is_plugin_mixture_density(blobs):
    m = BayesianGaussianMixture(3, covariance_type="full", random_state=0, max_iter=200)
    m.fit(torch.from_numpy(blobs))
    w, mu, cov = np.asarray(m.weights_), np.asarray(m.means_), np.asarray(m.covariances_)
    comps = [multivariate_normal(mu[k], cov[k]).logpdf(blobs[:20]) for k in range(3)]
    ref = logsumexp(np.log(w)[:, None] + np.array(comps), axis=0)
    np.testing.assert_allclose(np.asarray(m.log_prob(blobs[:20])), ref, rtol=1e-10)
    torch.testing.assert_close(m.loss(blobs[:20]), -m.log_prob(blobs[:20]))
    # scikit-learn's score_samples is E_q[...] inside the log: below the plug-in on average
    assert m.score_samples(blobs).mean() < m.log_prob(blobs).mean()


@pytest.mark.parametrize("cov", COV_TYPES)
def test_sample_mean_matches_mixture_mean(blobs, cov):
    m = BayesianGaussianMixture(3, covariance_type=cov, random_state=0, max_iter=200)
    m.fit(torch.as_tensor(blobs))  # torch in: tensors out
    n = 20_000
    s, labels = m.generate(n, generator=torch.Generator().manual_seed(0), return_labels=True)
    assert s.shape == (n, 3) and labels.shape == (n,)
    mean = (m.weights_[:, None] * m.means_).sum(0)
    total_var = torch.from_numpy(np.var(blobs, axis=0) * 2)  # generous bound on Var[x_i]
    assert ((s.mean(0) - mean).abs() < 5 * (total_var / n).sqrt()).all()
    freq = torch.bincount(labels, minlength=3).double() / n
    # multinomial frequencies: standard error sqrt(w (1 - w) / n)
    assert ((freq - m.weights_).abs() <= 5 * (m.weights_ * (1 - m.weights_) / n).sqrt()).all()


def test_bgmm_errors(blobs):
    with pytest.raises(ValueError, match="weight_concentration_prior_type"):
        BayesianGaussianMixture(2, weight_concentration_prior_type="pitman_yor").fit(blobs)
    with pytest.raises(ValueError, match="covariance_type"):
        BayesianGaussianMixture(2, covariance_type="block").fit(blobs)
    with pytest.raises(ValueError, match="n_components"):
        BayesianGaussianMixture(300).fit(blobs)
    with pytest.raises(ValueError, match="degrees_of_freedom_prior"):
        BayesianGaussianMixture(2, degrees_of_freedom_prior=1.0).fit(blobs)
    with pytest.raises(ValueError, match="covariance_prior"):
        BayesianGaussianMixture(2, covariance_prior=[1.0, 2.0]).fit(blobs)
    with pytest.raises(ValueError, match="mean_prior"):
        BayesianGaussianMixture(2, mean_prior=[1.0]).fit(blobs)
    with pytest.raises(NotFittedError, match="not fitted"):
        BayesianGaussianMixture(2).log_prob(blobs)
    with pytest.raises(ValueError, match="NaN"):
        BayesianGaussianMixture(2).fit(np.full_like(blobs, np.nan))


# ------------------------------------------------------------------ MeanFieldVI
@pytest.fixture(scope="module")
def regression():
    """Bayesian linear regression with correlated features: the posterior is exact Gaussian.

    ``y = X w + N(0, sigma^2)``, ``w ~ N(0, alpha^{-1} I)``: the posterior is ``N(mu,
    Lambda^{-1})`` with ``Lambda = alpha I + X^T X / sigma^2``, ``mu = Lambda^{-1} X^T y /
    sigma^2``. Minimising KL(q || p) over diagonal Gaussians gives ``m = mu`` and ``s_i^2 =
    1 / Lambda_ii`` (d/d s_i^2 of ``tr(Lambda diag(s^2)) / 2 - sum_i ln s_i`` vanishes there).
    """
    g = torch.Generator().manual_seed(0)
    n, sigma, alpha = 40, 0.5, 1.0

    def noise(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    base = noise(n, 1)
    x = torch.cat([base + 0.3 * noise(n, 1), base + 0.3 * noise(n, 1), noise(n, 1)], 1)
    y = x @ torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64) + sigma * noise(n)
    lam = alpha * torch.eye(3, dtype=torch.float64) + x.T @ x / sigma**2
    mu = torch.linalg.solve(lam, x.T @ y / sigma**2)

    def log_joint(w):  # (S, 3) -> (S,), up to an additive constant
        return -0.5 * ((y - w @ x.T) ** 2).sum(-1) / sigma**2 - 0.5 * alpha * (w**2).sum(-1)

    return log_joint, lam, mu


@pytest.fixture(scope="module")
def vi_fit(regression):
    log_joint, _, _ = regression
    vi = MeanFieldVI(
        log_joint, 3, n_samples=16, steps=1000, lr=0.05, generator=torch.Generator().manual_seed(0)
    )
    return vi.fit()


@pytest.mark.slow
def test_mean_field_vi_matches_closed_form(regression, vi_fit):
    """Mean = posterior mean; std = 1/sqrt(Lambda_ii), below the true marginal std.

    Tolerance: the reported values are Polyak-Ruppert averages over the last T = 500 steps.
    Their asymptotic covariance is ``H^{-1} C H^{-1} / T`` with H the ELBO's Hessian and C
    the covariance of one step's gradient noise. For ``m``: H = Lambda and C = Lambda
    diag(s^2) Lambda / S, so sd(m_i) = s_i / sqrt(S T). For ``rho_i = ln s_i``: H = 2 (at
    s_i^2 Lambda_ii = 1) and C_ii = (2 + sum_{j != i} Lambda_ij^2 s_i^2 s_j^2) / S, so
    sd(rho_i) = sqrt(C_ii / (4 T)). We allow 5 standard deviations.
    """
    _, lam, mu = regression
    s = lam.diagonal().rsqrt()
    S, T = 16, 500
    assert ((vi_fit.mean_ - mu).abs() < 5 * s / math.sqrt(S * T)).all()
    off = lam**2 * s[:, None] ** 2 * s[None, :] ** 2
    c = (2 + off.sum(1) - off.diagonal()) / S
    assert ((vi_fit.std_.log() - s.log()).abs() < 5 * (c / (4 * T)).sqrt()).all()
    marginal = torch.linalg.inv(lam).diagonal().sqrt()
    assert (vi_fit.std_ < marginal).all()  # mean-field under-estimates marginal spread


@pytest.mark.slow
def test_mean_field_vi_elbo_reaches_its_maximum(regression, vi_fit):
    """At the optimum, E_q[log_joint] = log_joint(mu) - d/2 (log_joint is quadratic with
    Hessian -Lambda and s_i^2 Lambda_ii = 1), so ELBO* = log_joint(mu) - d/2 + sum ln s_i
    + d/2 ln(2 pi e). The last half of the per-step Monte Carlo ELBOs (independent draws)
    average to it within 5 standard errors (plus the sub-optimality of the iterates, which is
    second order and far smaller)."""
    log_joint, lam, mu = regression
    s = lam.diagonal().rsqrt()
    d = 3
    best = log_joint(mu[None])[0] - d / 2 + s.log().sum() + d / 2 * (1 + math.log(2 * math.pi))
    tail = vi_fit.elbo_history_[500:]
    assert (tail.mean() - best).abs() < 5 * tail.std() / math.sqrt(len(tail)) + 1e-3
    assert vi_fit.elbo_history_[:50].mean() < tail.mean()  # it climbed


def test_mean_field_vi_seeded_and_errors(regression):
    log_joint, _, _ = regression

    def fit(seed):
        gen = torch.Generator().manual_seed(seed)
        return MeanFieldVI(log_joint, 3, steps=20, generator=gen).fit()

    a, b = fit(1), fit(1)
    assert torch.equal(a.mean_, b.mean_) and torch.equal(a.std_, b.std_)
    draws = a.sample_posterior(5, generator=torch.Generator().manual_seed(2))
    again = a.sample_posterior(5, generator=torch.Generator().manual_seed(2))
    assert draws.shape == (5, 3) and torch.equal(draws, again)
    lq = a.log_prob(draws)
    ref = torch.distributions.Normal(a.mean_, a.std_).log_prob(draws).sum(-1)
    torch.testing.assert_close(lq, ref)
    with pytest.raises(ValueError, match="shape"):
        MeanFieldVI(lambda z: z.sum(), 3, steps=2).fit()
    with pytest.raises(ValueError, match="dim"):
        MeanFieldVI(log_joint, 0)
    with pytest.raises(RuntimeError, match="fit"):
        MeanFieldVI(log_joint, 3).sample_posterior(2)
    with pytest.raises(ValueError, match="n"):
        a.sample_posterior(0)


@pytest.mark.cuda
def test_bgmm_on_cuda_matches_cpu(blobs):
    kw = dict(n_components=4, init_params="random_from_data", random_state=0, max_iter=50)
    cpu = BayesianGaussianMixture(**kw).fit(blobs)
    gpu = BayesianGaussianMixture(**kw, device="cuda").fit(blobs)
    assert gpu.means_.device.type == "cuda"
    torch.testing.assert_close(gpu.means_.cpu(), cpu.means_, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gpu.log_prob(blobs[:10]).cpu(), cpu.log_prob(blobs[:10]))
    s = gpu.generate(7, generator=torch.Generator().manual_seed(0))
    assert s.device.type == "cuda" and s.shape == (7, 3)


def test_sample_weight_equals_repeated_rows(blobs):
    """Integer sample weights give the same fit as repeating the rows (same initial resp)."""
    counts = np.random.RandomState(4).randint(1, 4, size=len(blobs))
    resp = np.random.RandomState(5).dirichlet(np.ones(3), size=len(blobs))
    kw = dict(n_components=3, max_iter=15, tol=0, mean_prior=[0.0, 0.0, 0.0])
    kw.update(covariance_prior=np.eye(3))  # data-independent priors for both fits
    weighted = BayesianGaussianMixture(**kw)
    weighted._initialize = lambda x_, w, rng: weighted._initialize_from_resp(
        x_, torch.from_numpy(resp) * w[:, None]
    )
    repeated = BayesianGaussianMixture(**kw)
    rep_resp = torch.from_numpy(np.repeat(resp, counts, axis=0))
    repeated._initialize = lambda x_, w, rng: repeated._initialize_from_resp(x_, rep_resp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weighted.fit(blobs, sample_weight=counts.astype(float))
        repeated.fit(np.repeat(blobs, counts, axis=0))
    torch.testing.assert_close(weighted.means_, repeated.means_, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(weighted.covariances_, repeated.covariances_, rtol=1e-9, atol=0)
    assert math.isclose(weighted.lower_bound_, repeated.lower_bound_, rel_tol=1e-9)


def test_save_load_with_array_priors(blobs, tmp_path):
    import probpath

    m = BayesianGaussianMixture(
        2,
        covariance_type="diag",
        mean_prior=np.zeros(3),
        covariance_prior=np.ones(3),
        random_state=0,
        dtype="float32",
    ).fit(blobs)
    assert m.means_.dtype == np.float32  # NumPy in, NumPy out, in the dtype asked for
    m.save(tmp_path / "bgmm")
    loaded = probpath.load(tmp_path / "bgmm")
    assert loaded.config["mean_prior"] == [0.0, 0.0, 0.0]
    torch.testing.assert_close(loaded.log_prob(blobs[:5]), m.log_prob(blobs[:5]))
    assert loaded.lower_bounds_ == m.lower_bounds_
