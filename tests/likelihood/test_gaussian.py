"""GaussianMLE and GaussianScoreMatching against closed forms, SciPy and each other (§1.1.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.exceptions import NotFittedError

from probpath.likelihood.gaussian import GaussianMLE, GaussianScoreMatching

TYPES = ["full", "diag", "spherical"]


@pytest.fixture
def data():
    """Correlated 3-D Gaussian data with a non-zero mean (float64)."""
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([[2.0, 0.0, 0.0], [0.8, 0.5, 0.0], [-0.3, 0.4, 1.2]], dtype=torch.float64)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64) @ a.T
    return x + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)


def _expected_cov(x: np.ndarray, kind: str) -> np.ndarray:
    s = np.cov(x.T, bias=True)  # the MLE divides by N
    if kind == "full":
        return s
    return np.diag(s) if kind == "diag" else np.diag(s).mean()


def _dense(cov: np.ndarray, d: int) -> np.ndarray:
    return cov if cov.ndim == 2 else np.diag(np.broadcast_to(cov, (d,)))


@pytest.mark.parametrize("kind", TYPES)
def test_mle_is_sample_mean_and_covariance(data, kind):
    m = GaussianMLE(kind).fit(data.numpy())  # NumPy in, NumPy out (scikit-learn's rule)
    assert isinstance(m.mean_, np.ndarray) and m.mean_.dtype == np.float64
    np.testing.assert_allclose(np.asarray(m.mean_), data.numpy().mean(0), rtol=1e-12)
    want = _expected_cov(data.numpy(), kind)
    np.testing.assert_allclose(np.asarray(m.covariance_), want, rtol=1e-12)
    precision = np.linalg.inv(_dense(np.asarray(m.covariance_), 3))
    np.testing.assert_allclose(_dense(np.asarray(m.precision_), 3), precision, rtol=1e-10)


@pytest.mark.parametrize("kind", TYPES)
def test_log_prob_matches_scipy(data, kind):
    m = GaussianMLE(kind).fit(data)
    ref = multivariate_normal(np.asarray(m.mean_), _dense(np.asarray(m.covariance_), 3))
    np.testing.assert_allclose(np.asarray(m.log_prob(data[:20])), ref.logpdf(data[:20].numpy()))
    torch.testing.assert_close(m.score_samples(data[:5]), m.log_prob(data[:5]))
    torch.testing.assert_close(m.loss(data[:5]), -m.log_prob(data[:5]))


def test_mle_maximises_the_likelihood(data):
    """Any perturbation of the MLE lowers the mean log-likelihood."""
    m = GaussianMLE().fit(data)
    best = m.log_prob(data).mean()
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        other = GaussianMLE().fit(data)
        other.mean_ = m.mean_ + 0.05 * torch.randn(3, generator=g, dtype=torch.float64)
        assert other.log_prob(data).mean() < best


@pytest.mark.parametrize("kind", TYPES)
def test_score_is_gradient_of_log_prob(data, kind):
    m = GaussianMLE(kind).fit(data)
    x = data[:10].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m.log_prob(x).sum(), x)
    torch.testing.assert_close(m.score_function(data[:10]), grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", TYPES)
def test_sample_moments(data, kind):
    """Sample mean within 5 standard errors sqrt(Sigma_ii / n) of mean_."""
    m = GaussianMLE(kind).fit(data)
    n = 40_000
    s = m.generate(n, generator=torch.Generator().manual_seed(2))
    assert s.shape == (n, 3) and s.dtype == torch.float64
    var = torch.from_numpy(np.diag(_dense(np.asarray(m.covariance_), 3)).copy())
    assert ((s.mean(0) - m.mean_).abs() < 5 * (var / n).sqrt()).all()
    # sample covariance: standard error of S_ij is sqrt((S_ii S_jj + S_ij^2) / n)
    cov = torch.from_numpy(_dense(np.asarray(m.covariance_), 3).copy())
    se = ((var[:, None] * var[None, :] + cov**2) / n).sqrt()
    assert ((torch.cov(s.T, correction=0) - cov).abs() < 5 * se).all()


def test_float32_and_errors(data):
    m = GaussianMLE(dtype="float32").fit(data)
    assert m.mean_.dtype == torch.float32 and m.config["dtype"] == "float32"
    assert GaussianMLE(dtype=torch.float32).config["dtype"] == "float32"
    with pytest.raises(NotFittedError, match="not fitted"):
        GaussianMLE().log_prob(data)
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMLE("tied").fit(data)  # scikit-learn validates in fit, not __init__
    with pytest.raises(ValueError, match="reg_covar"):
        GaussianMLE(reg_covar=-1.0).fit(data)
    with pytest.raises(ValueError, match="dtype"):
        GaussianMLE(dtype="int8").fit(data)
    singular = torch.cat([data[:, :2], torch.ones(len(data), 1, dtype=data.dtype)], 1)
    with pytest.raises(ValueError, match="reg_covar"):
        GaussianMLE().fit(singular)
    GaussianMLE(reg_covar=1e-6).fit(singular)  # the suggested fix works
    with pytest.raises(ValueError, match="shape"):
        GaussianMLE().fit(data).log_prob(data[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        GaussianMLE().fit(data.clone().fill_(math.nan))
    with pytest.raises(ValueError, match="n"):
        GaussianMLE().fit(data).sample(0)


@pytest.mark.parametrize("kind", TYPES)
def test_score_matching_equals_mle(data, kind):
    """Survey §1.1.1: for a Gaussian the score-matching estimate is the MLE (float64, 1e-8)."""
    mle = GaussianMLE(kind).fit(data)
    sm = GaussianScoreMatching(kind).fit(data)
    torch.testing.assert_close(sm.mean_, mle.mean_, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(sm.covariance_, mle.covariance_, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("kind", TYPES)
def test_score_matching_gradient_descent_agrees(data, kind):
    """L-BFGS on Eq. (7) with an autograd divergence reaches the closed-form solution."""
    closed = GaussianScoreMatching(kind).fit(data)
    grad = GaussianScoreMatching(kind, method="gradient").fit(data)
    torch.testing.assert_close(grad.mean_, closed.mean_, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(grad.covariance_, closed.covariance_, rtol=1e-6, atol=1e-8)


def test_score_matching_objective_is_minimised_in_closed_form(data):
    """Eq. (7) at the closed-form solution equals its analytic minimum and beats neighbours.

    At Lambda = S^{-1}, h = Lambda xbar: J = -tr(S^{-1}) + tr(S^{-2} S) / 2 = -tr(S^{-1}) / 2.
    """
    sm = GaussianScoreMatching().fit(data)
    lam = sm.precision_

    def objective(mean, lam):
        return GaussianScoreMatching.objective(data, lambda z: -(z - mean) @ lam)

    j = objective(sm.mean_, lam)
    s = torch.cov(data.T, correction=0)
    torch.testing.assert_close(j, -0.5 * torch.linalg.inv(s).trace(), rtol=1e-10, atol=0)
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        e = 0.05 * torch.randn(3, 3, generator=g, dtype=torch.float64)
        assert objective(sm.mean_, lam + 0.5 * (e + e.T)) > j
        assert objective(sm.mean_ + e[0], lam) > j


def test_score_matching_singular_error(data):
    x = data[:3]  # 3 samples in 3-D: rank-2 covariance
    with pytest.raises(ValueError, match="singular"):
        GaussianScoreMatching().fit(x)
    with pytest.raises(ValueError, match="method"):
        GaussianScoreMatching(method="sgd").fit(data)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", TYPES)
def test_mle_on_cuda_matches_cpu(data, kind):
    cpu = GaussianMLE(kind).fit(data)
    gpu = GaussianMLE(kind, device="cuda").fit(data)
    assert gpu.mean_.device.type == "cuda"
    torch.testing.assert_close(gpu.covariance_.cpu(), cpu.covariance_)
    torch.testing.assert_close(gpu.log_prob(data[:10]).cpu(), cpu.log_prob(data[:10]))
    torch.testing.assert_close(gpu.score_function(data[:10]).cpu(), cpu.score_function(data[:10]))
    gen = torch.Generator().manual_seed(0)  # a CPU generator drives CUDA sampling
    s = gpu.generate(5, generator=gen)
    assert s.device.type == "cuda"
    torch.testing.assert_close(s.cpu(), cpu.generate(5, generator=torch.Generator().manual_seed(0)))
    sm = GaussianScoreMatching(kind, device="cuda").fit(data)
    torch.testing.assert_close(sm.covariance_.cpu(), cpu.covariance_)


@pytest.mark.parametrize("kind", TYPES)
def test_reg_covar_is_added_once_to_both_estimators(data, kind):
    """covariance_ = S + reg I for the MLE, and score matching on S + reg I gives the same."""
    plain = GaussianMLE(kind).fit(data)
    reg = GaussianMLE(kind, reg_covar=0.5).fit(data)
    shift = 0.5 * (torch.eye(3, dtype=torch.float64) if kind == "full" else 1.0)
    torch.testing.assert_close(reg.covariance_, plain.covariance_ + shift)
    for method in ("closed_form", "gradient"):
        sm = GaussianScoreMatching(kind, method=method, reg_covar=0.5).fit(data)
        torch.testing.assert_close(sm.covariance_, reg.covariance_, rtol=1e-6, atol=1e-9)


# Added after a mutation run (mutmut on likelihood/gaussian.py, tests/README.md): the samplers'
# generator and the gradient fit's recorded objective were not checked.
@pytest.mark.parametrize("cls", [GaussianMLE, GaussianScoreMatching])
@pytest.mark.parametrize("kind", TYPES)
def test_sampling_is_reproducible_through_generator(data, cls, kind):
    """The generative draw (``generate``, probpath's model contract; scikit-learn's
    ``sample`` follows ``random_state``): same seed, same draws; another seed, other draws;
    float64 in, float64 out."""
    m = cls(kind).fit(data)
    a = m.generate(50, generator=torch.Generator().manual_seed(7))
    b = m.generate(50, generator=torch.Generator().manual_seed(7))
    c = m.generate(50, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float64 and a.shape == (50, 3)
    torch.manual_seed(0)
    d = m.generate(50)
    torch.manual_seed(0)
    assert torch.equal(d, m.generate(50))  # without a generator: torch's global stream


@pytest.mark.parametrize("kind", TYPES)
def test_gradient_fit_records_the_minimum_of_eq7(data, kind):
    """The minimum of Eq. (7) (without its 1/2, ``J = E[tr grad s + |s|^2 / 2]``) over the
    Gaussian family: ``s = -Lambda (x - mu)`` gives ``J = -tr Lambda + tr(Lambda S Lambda) / 2``,
    minimised by ``mu = xbar`` and ``Lambda = S^{-1}`` (full): ``J = -tr(S^{-1}) / 2``;
    ``Lambda = diag(1 / S_ii)`` (diag): ``-sum_i (1 / S_ii) / 2``; ``Lambda = I / mean_i S_ii``
    (spherical): ``-d / (2 mean_i S_ii)``. L-BFGS reaches it to its 1e-12 gradient tolerance;
    compared at 1e-8 relative (the agreement of the fitted parameters)."""
    m = GaussianScoreMatching(kind, method="gradient").fit(data)
    s = torch.cov(data.T, correction=0)
    expected = {
        "full": -0.5 * torch.linalg.inv(s).trace(),
        "diag": -0.5 * (1 / s.diagonal()).sum(),
        "spherical": -0.5 * 3 / s.diagonal().mean(),
    }[kind]
    assert abs(m.objective_ - float(expected)) <= 1e-8 * abs(float(expected))
