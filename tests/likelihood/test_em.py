"""The general EM engine: Eqs. (9)-(12) of the survey and the template loop."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from probpath.likelihood.em import (
    ConvergenceWarning,
    EMEstimator,
    decompose_log_likelihood,
    evidence_lower_bound,
    kl_to_posterior,
)
from probpath.likelihood.mixture import GaussianMixture


def _random_problem(n=50, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    log_joint = torch.randn(n, k, generator=g, dtype=torch.float64) * 3
    q = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), dim=1)
    q[0] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # 0 ln 0 = 0
    return log_joint, q


def test_eq10_decomposition_for_any_q():
    log_joint, q = _random_problem()
    d = decompose_log_likelihood(log_joint, q)
    torch.testing.assert_close(d.log_likelihood, d.lower_bound + d.kl, rtol=1e-12, atol=1e-10)
    assert (kl_to_posterior(log_joint, q) >= -1e-12).all()
    assert (evidence_lower_bound(log_joint, q) <= torch.logsumexp(log_joint, 1) + 1e-12).all()


def test_exact_e_step_makes_kl_zero_and_the_bound_tight():
    log_joint, _ = _random_problem()
    posterior = torch.softmax(log_joint, dim=1)
    d = decompose_log_likelihood(log_joint, posterior)
    assert abs(float(d.kl)) < 1e-10
    torch.testing.assert_close(d.lower_bound, d.log_likelihood, rtol=1e-12, atol=1e-10)


def _blobs(n=300, seed=0):
    rng = np.random.RandomState(seed)
    c = np.array([[-3.0, 0.0], [3.0, 1.0], [0.0, 4.0]])
    return torch.as_tensor(c[rng.randint(3, size=n)] + rng.randn(n, 2))  # torch in, torch out


def _log_joint_by_hand(gm, x):
    """``ln π_k + ln N(x | mu_k, Sigma_k)`` with torch.distributions (independent code)."""
    x = torch.as_tensor(x)
    comps = [MultivariateNormal(gm.means_[k], gm.covariances_[k]) for k in range(len(gm.weights_))]
    return torch.stack([c.log_prob(x) for c in comps], 1) + torch.log(gm.weights_)


def test_fitted_mixture_posterior_is_exact_and_bound_is_the_log_likelihood():
    x = _blobs()
    gm = GaussianMixture(3, random_state=0).fit(x)
    log_joint = _log_joint_by_hand(gm, x)
    q = gm.predict_proba(x)
    d = decompose_log_likelihood(log_joint, q)
    torch.testing.assert_close(d.log_likelihood, gm.score_samples(x).sum(), rtol=1e-10, atol=1e-8)
    assert abs(float(d.kl)) < 1e-8
    torch.testing.assert_close(d.lower_bound, d.log_likelihood, rtol=1e-10, atol=1e-8)


def test_m_step_increases_q_and_the_log_likelihood():
    """Eq. (9): with q = p(Z|X, θ_old) fixed, L(q, θ_new) >= L(q, θ_old) = ln p(X|θ_old)."""
    x = _blobs(seed=1)
    init = {
        "weights_init": [1 / 3] * 3,
        "means_init": x[:3],
        "precisions_init": np.stack([np.eye(2)] * 3),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in (1, 2, 4):
            old = GaussianMixture(3, tol=0, max_iter=i, **init).fit(x)
            new = GaussianMixture(3, tol=0, max_iter=i + 1, **init).fit(x)
            q = old.predict_proba(x)
            bound_old = evidence_lower_bound(_log_joint_by_hand(old, x), q).sum()
            bound_new = evidence_lower_bound(_log_joint_by_hand(new, x), q).sum()
            assert math.isclose(float(bound_old), old.score(x) * len(x), rel_tol=1e-10)
            assert bound_new >= bound_old - 1e-9
            assert new.score(x) >= old.score(x) - 1e-12


class _TwoMeans(EMEstimator):
    """Template check: 1-D mixture of two unit-variance Gaussians, equal weights, via the
    plain ``_e_step`` / ``_m_step`` hooks (not the fused mixture pass)."""

    def _initialize(self, x, w, rng):
        self.mu_ = torch.as_tensor(rng.choice(x[:, 0].numpy(), 2, replace=False))

    def _e_step(self, x, w):
        lj = -0.5 * (x - self.mu_) ** 2 - 0.5 * math.log(2 * math.pi) + math.log(0.5)
        lse = torch.logsumexp(lj, 1)
        return float(lse.mean()), lj - lse[:, None]

    def _m_step(self, x, w, log_resp):
        r = log_resp.exp()
        self.mu_ = (r * x).sum(0) / r.sum(0)

    def _get_parameters(self):
        return {"mu_": self.mu_.clone()}

    def _set_parameters(self, params):
        self.mu_ = params["mu_"]


def test_template_loop_converges_monotonically_and_warns():
    rng = np.random.RandomState(0)
    x = torch.as_tensor(np.r_[rng.randn(200) - 4, rng.randn(200) + 4][:, None])
    est = _TwoMeans(tol=1e-10, max_iter=200, random_state=0).fit(x)
    assert est.converged_ and est.n_iter_ == len(est.lower_bounds_)
    assert np.all(np.diff(est.lower_bounds_) >= -1e-12)
    torch.testing.assert_close(
        est.mu_.sort().values, torch.tensor([-4.0, 4.0], dtype=torch.float64), atol=0.2, rtol=0
    )
    with pytest.warns(ConvergenceWarning):
        short = _TwoMeans(tol=0, max_iter=2, random_state=0).fit(x)
    assert short.n_iter_ == 2 and not short.converged_
    best = _TwoMeans(tol=1e-10, max_iter=200, n_init=3, random_state=0).fit(x)
    assert best.lower_bound_ >= est.lower_bound_ - 1e-12
    with pytest.raises(ValueError, match="max_iter"):
        _TwoMeans(max_iter=-1).fit(x)
    with pytest.raises(ValueError, match="n_init"):
        _TwoMeans(n_init=0).fit(x)
