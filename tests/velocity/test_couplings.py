"""Couplings and the CFM objective against closed forms and POT.

* the minibatch OT coupling attains POT's exact OT cost (``ot.emd2``) and is a permutation;
* CFM's loss of the exact marginal velocity of Gaussian data equals the conditional variance
  of the target, ``Var(u | x_t)``, in closed form (Eq. 62 vs Eq. 61).
"""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

from probpath.paths.affine import AffinePath
from probpath.paths.oracle import GaussianMixtureOracle
from probpath.velocity import cfm_loss, get_coupling, independent_coupling, ot_coupling, ot_plan

DT = torch.float64


def _batch(n, seed, d=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=DT) * 2 + 1, torch.randn(
        n, d, generator=g, dtype=DT
    )


def _cost(a, b):
    return float(((a - b) ** 2).sum(1).mean())


@pytest.mark.parametrize("n", [1, 7, 64])
def test_ot_coupling_attains_exact_ot_cost(n):
    x0, eps = _batch(n, seed=n)
    x0c, epsc = ot_coupling(x0, eps)
    assert torch.equal(x0c, x0)  # data order (and labels) untouched
    # a permutation of eps: the same multiset of rows
    assert torch.equal(torch.sort(epsc[:, 0]).values, torch.sort(eps[:, 0]).values)
    m = torch.cdist(x0, eps).pow(2).numpy()
    exact = ot.emd2(np.full(n, 1 / n), np.full(n, 1 / n), m)
    assert _cost(x0c, epsc) == pytest.approx(exact, rel=1e-10, abs=1e-12)
    assert _cost(x0c, epsc) <= _cost(x0, eps) + 1e-12


def test_plans_agree_and_have_uniform_marginals():
    x0, eps = _batch(16, seed=3)
    a, b = ot_plan(x0, eps, "assignment"), ot_plan(x0, eps, "emd")
    m = torch.cdist(x0, eps).pow(2).numpy()
    assert (a * m).sum() == pytest.approx((b * m).sum(), rel=1e-10)
    np.testing.assert_allclose(a.sum(1), 1 / 16)
    np.testing.assert_allclose(b.sum(0), 1 / 16)


def test_emd_unequal_sizes_draws_pairs():
    x0, _ = _batch(10, seed=0)
    _, eps = _batch(4, seed=1)
    g = torch.Generator().manual_seed(0)
    a, b = ot_coupling(x0, eps, g, solver="emd")
    assert a.shape == (10, 2) and b.shape == (10, 2)
    with pytest.raises(ValueError, match="equal batch sizes"):
        ot_plan(x0, eps, "assignment")


def test_get_coupling():
    assert get_coupling("independent") is independent_coupling
    assert get_coupling("ot") is ot_coupling
    with pytest.raises(ValueError, match="coupling"):
        get_coupling("sinkhorn-ish")


@pytest.mark.parametrize("t", [0.2, 0.7])
def test_cfm_loss_of_marginal_velocity_is_conditional_variance(t):
    # x0 ~ N(0, c I), eps ~ N(0, I), x_t = (1 - t) x0 + t eps, u = eps - x0 (per dimension):
    # Var(u | x_t) = Var(u) - Cov(u, x_t)^2 / Var(x_t).
    c = 0.5
    path = AffinePath("linear")
    oracle = GaussianMixtureOracle(
        torch.ones(1, dtype=DT), torch.zeros(1, 2, dtype=DT), c * torch.eye(2, dtype=DT)[None], path
    )
    n = 20000
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, 2, generator=g, dtype=DT) * math.sqrt(c)
    loss = cfm_loss(oracle, x0, torch.full((n,), t, dtype=DT), generator=g)
    var_u, cov, var_x = 1 + c, t - (1 - t) * c, (1 - t) ** 2 * c + t**2
    expect = var_u - cov**2 / var_x
    assert abs(loss.mean() - expect) < 4 * loss.std() / math.sqrt(n)
    # reduction="sum" adds the two dimensions
    g2 = torch.Generator().manual_seed(0)
    x0b = torch.randn(n, 2, generator=g2, dtype=DT) * math.sqrt(c)
    total = cfm_loss(oracle, x0b, torch.full((n,), t, dtype=DT), generator=g2, reduction="sum")
    torch.testing.assert_close(total, 2 * loss)


def test_cfm_loss_with_ot_coupling_uses_paired_noise():
    path = AffinePath("linear")
    field = GaussianMixtureOracle(
        torch.ones(1, dtype=DT), torch.zeros(1, 2, dtype=DT), torch.eye(2, dtype=DT)[None], path
    )
    x0, eps = _batch(32, seed=5)
    t = torch.full((32,), 0.5, dtype=DT)
    paired = ot_coupling(x0, eps)[1]
    a = cfm_loss(field, x0, t, eps=eps, coupling=ot_coupling)
    b = cfm_loss(field, x0, t, eps=paired)
    torch.testing.assert_close(a, b)
