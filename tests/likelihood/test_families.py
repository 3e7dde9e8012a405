"""Bernoulli and Poisson mixtures against hand-written NumPy EM from the same start."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.special import gammaln, logsumexp

from probpath.likelihood.em import ConvergenceWarning
from probpath.likelihood.families import BernoulliMixture, PoissonMixture

FLOOR = 1e-10


def _binary(n=300, d=8, seed=0):
    rng = np.random.RandomState(seed)
    protos = rng.rand(3, d) > 0.5
    labels = rng.randint(3, size=n)
    flips = rng.rand(n, d) < 0.1
    return (protos[labels] ^ flips).astype(float)


def _counts(n=300, d=4, seed=0):
    rng = np.random.RandomState(seed)
    rates = np.array([[1.0, 8.0, 2.0, 0.5], [6.0, 1.0, 4.0, 3.0]])[:, :d]
    return rng.poisson(rates[rng.randint(2, size=n)]).astype(float)


def _numpy_em(x, k, seed, iters, log_comp, m_step):
    """Plain EM from scikit-learn's "random_from_data" start; returns params and bounds."""
    rng = np.random.RandomState(seed)
    idx = rng.choice(len(x), size=k, replace=False)
    resp = np.zeros((len(x), k))
    resp[idx, np.arange(k)] = 1
    params, weights = m_step(x, resp), resp.sum(0) / resp.sum()
    bounds = []
    for _ in range(iters):
        lj = log_comp(x, params) + np.log(weights)
        lse = logsumexp(lj, axis=1)
        resp = np.exp(lj - lse[:, None])
        bounds.append(lse.mean())
        params, weights = m_step(x, resp), resp.sum(0) / len(x)
    return params, weights, np.array(bounds)


def _fit(cls, x, k, iters):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls(k, init_params="random_from_data", random_state=0, tol=0, max_iter=iters).fit(x)


def test_bernoulli_mixture_matches_numpy_em():
    x = _binary()

    def log_comp(x, p):
        return x @ np.log(p).T + (1 - x) @ np.log1p(-p).T

    def m_step(x, r):
        return np.clip(r.T @ x / r.sum(0)[:, None], FLOOR, 1 - FLOOR)

    p, w, bounds = _numpy_em(x, 3, 0, 15, log_comp, m_step)
    bm = _fit(BernoulliMixture, x, 3, 15)
    np.testing.assert_allclose(np.asarray(bm.probs_), p, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.asarray(bm.weights_), w, rtol=1e-10)
    np.testing.assert_allclose(bm.lower_bounds_, bounds, rtol=1e-10)
    np.testing.assert_allclose(
        np.asarray(bm.score_samples(x)), logsumexp(log_comp(x, p) + np.log(w), axis=1), rtol=1e-8
    )
    assert np.all(np.diff(bounds) >= -1e-12)


def test_poisson_mixture_matches_numpy_em():
    x = _counts()

    def log_comp(x, lam):
        return x @ np.log(lam).T - lam.sum(1) - gammaln(x + 1).sum(1, keepdims=True)

    def m_step(x, r):
        return np.maximum(r.T @ x / r.sum(0)[:, None], FLOOR)

    lam, w, bounds = _numpy_em(x, 2, 0, 20, log_comp, m_step)
    pm = _fit(PoissonMixture, x, 2, 20)
    np.testing.assert_allclose(np.asarray(pm.rates_), lam, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(pm.weights_), w, rtol=1e-8)
    np.testing.assert_allclose(pm.lower_bounds_, bounds, rtol=1e-10)
    assert np.all(np.diff(bounds) >= -1e-12)


def test_poisson_one_component_density_is_exact_and_normalised():
    x = _counts(d=1)
    pm = PoissonMixture(2, random_state=0).fit(x)
    grid = torch.arange(0, 80, dtype=torch.float64)[:, None]
    assert abs(float(pm.score_samples(grid).exp().sum()) - 1) < 1e-10


def test_bernoulli_density_sums_to_one_over_all_binary_vectors():
    x = _binary(d=5)
    bm = BernoulliMixture(3, random_state=0).fit(x)
    allv = torch.tensor([[(i >> b) & 1 for b in range(5)] for i in range(32)], dtype=torch.float64)
    assert abs(float(bm.score_samples(allv).exp().sum()) - 1) < 1e-12


def test_sampling_marginals_and_seed():
    x = _binary()
    bm = BernoulliMixture(3, random_state=0).fit(x)
    s = bm.generate(20_000, generator=torch.Generator().manual_seed(0))
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    want = (bm.weights_[:, None] * bm.probs_).sum(0)
    assert (s.mean(0) - want).abs().max() < 5 * 0.5 / np.sqrt(20_000)
    assert torch.equal(s, bm.generate(20_000, generator=torch.Generator().manual_seed(0)))
    pm = PoissonMixture(2, random_state=0).fit(_counts())
    c = pm.generate(20_000, generator=torch.Generator().manual_seed(1))
    want = (pm.weights_[:, None] * pm.rates_).sum(0)
    assert ((c.mean(0) - want).abs() / want).max() < 0.05


def test_value_checks():
    with pytest.raises(ValueError, match="binary"):
        BernoulliMixture(2).fit(np.random.RandomState(0).rand(10, 3))
    with pytest.raises(ValueError, match="counts"):
        PoissonMixture(2).fit(-np.ones((10, 3)))
    bm = BernoulliMixture(2, random_state=0).fit(_binary(d=4))
    with pytest.raises(ValueError, match="binary"):
        bm.score_samples(np.full((2, 4), 0.5))
    with pytest.raises(ValueError, match="3 features, but BernoulliMixture is expecting 4"):
        bm.score_samples(np.zeros((2, 3)))
