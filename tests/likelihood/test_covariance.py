"""The covariance-type strategy objects against closed forms (one object per type)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from probpath.likelihood.covariance import COVARIANCE_TYPES, covariance_type

K, D = 3, 4


def _covariances(name: str, seed: int = 0) -> torch.Tensor:
    """Random SPD covariances in the layout of ``name`` (eigenvalues in [0.3, 2.3])."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(K, D, D, generator=g, dtype=torch.float64)
    full = a @ a.mT / D + 0.3 * torch.eye(D, dtype=torch.float64)
    var = torch.rand(K, D, generator=g, dtype=torch.float64) * 2 + 0.3
    return {"full": full, "tied": full[0], "diag": var, "spherical": var[:, 0]}[name]


def _dense(name: str, cov: torch.Tensor) -> torch.Tensor:
    """The ``(K, d, d)`` matrices a layout stands for."""
    eye = torch.eye(D, dtype=torch.float64)
    return {
        "full": lambda: cov,
        "tied": lambda: cov.expand(K, D, D),
        "diag": lambda: torch.diag_embed(cov),
        "spherical": lambda: cov[:, None, None] * eye,
    }[name]()


@pytest.mark.parametrize("name", COVARIANCE_TYPES)
def test_log_prob_is_the_gaussian_density(name):
    """``ln N(x | mu_k, Sigma_k)`` from the strategy equals scipy's on the dense matrices;
    float64 round-off on values of size ~10 with condition numbers <= 10: 1e-12 relative."""
    cov = covariance_type(name)
    sigma = _covariances(name)
    g = torch.Generator().manual_seed(1)
    means = torch.randn(K, D, generator=g, dtype=torch.float64)
    x = torch.randn(50, D, generator=g, dtype=torch.float64) * 2
    got = cov.log_prob(x, means, cov.precision_cholesky(sigma))
    dense = _dense(name, sigma).numpy()
    want = np.stack(
        [multivariate_normal(means[k].numpy(), dense[k]).logpdf(x.numpy()) for k in range(K)], 1
    )
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    if name == "full":  # the whitened form of the same density
        out = torch.zeros(K, 50, dtype=torch.float64)
        work = torch.empty(50 * K * D, dtype=torch.float64)
        u = cov.precision_cholesky(sigma)
        cov.whitened_log_prob_t(x, cov.whitening(means, u), out=out, work=work)
        np.testing.assert_allclose(out.T.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("name", COVARIANCE_TYPES)
def test_cholesky_round_trips_and_log_det(name):
    """``covariances(U) = Sigma``, ``from_precisions(precisions(U)) = U`` and ``ln det U =
    -½ ln det Sigma`` (round-off of d = 4 factorisations: 1e-12)."""
    cov = covariance_type(name)
    sigma = _covariances(name)
    u = cov.precision_cholesky(sigma)
    torch.testing.assert_close(cov.covariances(u), sigma, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cov.from_precisions(cov.precisions(u)), u, rtol=1e-12, atol=1e-12)
    want = -0.5 * torch.logdet(_dense(name, sigma))
    got = cov.log_det(u, D)
    torch.testing.assert_close(got.expand(K) if got.ndim == 0 else got, want, rtol=1e-12, atol=0)
    assert tuple(sigma.shape) == cov.shape(K, D)


def test_parameter_counts_and_unknown_name():
    """Free parameters: K d(d+1)/2, d(d+1)/2, K d, K (scikit-learn's counts)."""
    counts = {name: covariance_type(name).n_parameters(K, D) for name in COVARIANCE_TYPES}
    assert counts == {
        "full": K * D * (D + 1) // 2,
        "tied": D * (D + 1) // 2,
        "diag": K * D,
        "spherical": K,
    }
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        covariance_type("banded")


@pytest.mark.parametrize("name", COVARIANCE_TYPES)
def test_scatter_is_the_weighted_covariance(name):
    """The M-step from ``resp^T T(x)`` equals the direct weighted covariance about the new
    means, projected on the layout (round-off: 1e-12)."""
    cov = covariance_type(name)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, D, generator=g, dtype=torch.float64)
    resp = torch.softmax(torch.randn(200, K, generator=g, dtype=torch.float64), 1)
    nk = resp.sum(0)
    stats = resp.T @ cov.features(x)
    q = cov.quadratic_width(D)
    means = stats[:, q : q + D] / nk[:, None]
    got = cov.scatter(stats, nk, means, xx=(x * resp.sum(1, keepdim=True)).T @ x)
    diff = x[None] - means[:, None]  # (K, n, d)
    full = torch.einsum("kn,kni,knj->kij", resp.T, diff, diff)
    want = {
        "full": lambda: full / nk[:, None, None],
        "tied": lambda: full.sum(0) / nk.sum(),
        "diag": lambda: torch.diagonal(full, dim1=1, dim2=2) / nk[:, None],
        "spherical": lambda: torch.diagonal(full, dim1=1, dim2=2).sum(1) / (D * nk),
    }[name]()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert math.isfinite(float(got.sum()))
