"""The documented recipe: plug a user's component family into the EM engine.

A mixture of exponential distributions on ``x > 0`` (``d`` independent coordinates):
``ln p(x | λ_k) = Σ_j ln λ_kj - λ_kj x_j``; M-step ``λ_k = N_k / Σ_n r_nk x_n``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.special import logsumexp

from probpath.likelihood.em import ConvergenceWarning
from probpath.likelihood.mixture import MixtureEM


class ExponentialMixture(MixtureEM):
    def _component_log_prob(self, x):
        return torch.log(self.rates_).sum(1) - x @ self.rates_.T

    def _sufficient_statistics(self, x, resp):
        return {"s1": resp.T @ x}

    def _update_components(self, stats, nk):
        self.rates_ = nk[:, None] / stats["s1"]

    def _component_parameters(self):
        return {"rates_": self.rates_}

    def _n_component_parameters(self):
        return self.rates_.numel()

    def _sample_components(self, labels, generator):
        u = torch.rand(
            len(labels), self.rates_.shape[1], generator=generator, dtype=self.rates_.dtype
        )
        return -torch.log1p(-u) / self.rates_[labels]


def _data(n=400, seed=0):
    rng = np.random.RandomState(seed)
    scale = np.array([[0.5, 2.0], [4.0, 0.3]])
    return rng.exponential(scale[rng.randint(2, size=n)])


def test_user_family_runs_the_shared_em_and_matches_numpy():
    x = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        em = ExponentialMixture(
            2, init_params="random_from_data", random_state=0, tol=0, max_iter=30, chunk_size=64
        ).fit(x)
    # the same EM by hand
    rng = np.random.RandomState(0)
    idx = rng.choice(len(x), 2, replace=False)
    lam, w, bounds = 1 / x[idx], np.full(2, 0.5), []
    for _ in range(30):
        lj = np.log(lam).sum(1) - x @ lam.T + np.log(w)
        lse = logsumexp(lj, axis=1)
        r = np.exp(lj - lse[:, None])
        bounds.append(lse.mean())
        lam, w = r.sum(0)[:, None] / (r.T @ x), r.mean(0)
    np.testing.assert_allclose(np.asarray(em.rates_), lam, rtol=1e-9)
    np.testing.assert_allclose(em.lower_bounds_, bounds, rtol=1e-10)
    assert np.all(np.diff(bounds) >= -1e-12)
    # the rest of the mixture API comes for free
    assert em.predict(x).shape == (len(x),)
    assert em.generate(5, generator=torch.Generator().manual_seed(0)).shape == (5, 2)
    assert np.isfinite(em.bic(x))
