"""The exact Gaussian-mixture posterior under ``y = A x + sigma_y n``, and the solvers on it.

Posterior check (exact): Bayes' rule says ``log p(x | y) - log p(x) - log N(y; A x,
sigma_y^2 I)`` is the constant ``-log p(y)`` in ``x``, with ``p(y) = sum_k w_k N(y; A mu_k,
A S_k A^T + sigma_y^2 I)``. Float64 closed forms of size O(10): atol 1e-9.

Solvers: DDNM's range-space replacement makes ``A x = y`` exact up to round-off when
``sigma_y = 0`` (atol 1e-9 on O(1) values after 20 float64 steps). DPS, ΠGDM and DDNM are
approximations of the posterior, so their samples are only required to be much closer to it
(sliced W2) than the prior is; the benchmark reports the actual distances.
"""

from __future__ import annotations

import math

import pytest
import torch

from probpath.inverse import ddnm, dps, make_operator, pigdm
from probpath.metrics import sliced_wasserstein
from probpath.paths.affine import AffinePath
from probpath.paths.oracle import GaussianMixtureOracle

DT = torch.float64


def _oracle(d=2, k=3, seed=0, schedule="vp"):
    g = torch.Generator().manual_seed(seed)
    mu = 2.0 * torch.randn(k, d, generator=g, dtype=DT)
    l = 0.3 * torch.randn(k, d, d, generator=g, dtype=DT)
    cov = l @ l.transpose(1, 2) + 0.2 * torch.eye(d, dtype=DT)
    w = torch.softmax(torch.randn(k, generator=g, dtype=DT), 0)
    return GaussianMixtureOracle(w, mu, cov, path=AffinePath(schedule))


def _log_normal(y, mean, cov):
    return torch.distributions.MultivariateNormal(mean, cov).log_prob(y)


@pytest.mark.parametrize("task, options", [("project", {"m": 3}), ("inpaint", {}), ("deblur", {})])
def test_posterior_is_bayes_rule(task, options):
    orc = _oracle(d=6)
    op = make_operator(task, (6,), sigma_y=0.3, **options)
    a = op.matrix()
    g = torch.Generator().manual_seed(1)
    y = op.observe(orc.sample(1, generator=g), generator=g)[0]
    post = orc.posterior(a, y, op.sigma_y)
    post_oracle = GaussianMixtureOracle(post.weights, post.means, post.covs)
    x = orc.sample(7, generator=g)
    sy2 = op.sigma_y**2 * torch.eye(len(y), dtype=DT)
    lik = torch.stack([_log_normal(y, a @ xi, sy2) for xi in x])
    diff = post_oracle.log_prob(x) - orc.log_prob(x) - lik
    evidence = torch.logsumexp(
        torch.stack(
            [
                math.log(orc.weights[i])
                + _log_normal(y, a @ orc.means[i], a @ orc.covs[i] @ a.T + sy2)
                for i in range(len(orc.weights))
            ]
        ),
        0,
    )
    assert torch.allclose(diff, -evidence.expand(7), atol=1e-9, rtol=0)


def test_noiseless_posterior_lives_on_the_constraint():
    orc = _oracle(d=5)
    op = make_operator("inpaint", (5,))
    g = torch.Generator().manual_seed(2)
    y = op.forward(orc.sample(1, generator=g))[0]
    x = orc.posterior(op.matrix(), y, 0.0).sample(50, g)
    assert torch.allclose(op.forward(x), y.expand(50, -1), atol=1e-9, rtol=0)


@pytest.mark.parametrize(
    "task, options", [("inpaint", {}), ("project", {"m": 6}), ("superres", {"factor": 4})]
)
def test_ddnm_keeps_the_measurement_exactly(task, options):
    orc = _oracle(d=16, k=4)
    op = make_operator(task, (16,), **options)
    g = torch.Generator().manual_seed(3)
    y = op.forward(orc.sample(8, generator=g))
    out = ddnm(orc, op, y, steps=20, generator=g)
    assert out.nfe == 20
    assert torch.allclose(op.forward(out.x), y, atol=1e-9, rtol=0)


@pytest.mark.parametrize("solver", [dps, pigdm, ddnm])
def test_solvers_move_towards_the_posterior(solver):
    # 2-D mixture, denoising with sigma_y = 0.5: the prior is ~1.9 (SW2) from the exact
    # posterior, two exact posterior samples of 600 are ~0.03 apart; we ask for < 0.5 (tuned
    # nowhere: a solver ignoring y scores the prior's ~1.9, the solvers score 0.08-0.4 here)
    orc = GaussianMixtureOracle(
        [0.3, 0.3, 0.4],
        [[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]],
        torch.stack([0.3 * torch.eye(2, dtype=DT)] * 3),
    )
    op = make_operator("denoise", (2,), sigma_y=0.5)
    g = torch.Generator().manual_seed(0)
    y = op.observe(torch.tensor([[1.0, 0.5]], dtype=DT), generator=g)
    post = orc.posterior(op.matrix(), y[0], op.sigma_y)
    ref = post.sample(600, g)
    prior_gap = sliced_wasserstein(orc.sample(600, generator=g), ref)
    out = solver(orc, op, y.expand(600, -1).contiguous(), steps=30, generator=g)
    assert sliced_wasserstein(out.x, ref) < 0.5 < prior_gap


def test_solver_input_errors():
    orc = _oracle()
    op = make_operator("denoise", (2,))
    with pytest.raises(ValueError, match="LinearOperator"):
        ddnm(orc, "inpaint", torch.zeros(2, 2, dtype=DT))
    with pytest.raises(ValueError, match="one row per sample"):
        ddnm(orc, op, torch.zeros(2, dtype=DT))
    with pytest.raises(ValueError, match="Field"):
        dps(object(), op, torch.zeros(2, 2, dtype=DT))
