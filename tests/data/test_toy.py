"""Toy generators and Gaussian mixtures: shapes, seeding, and each set's defining geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probpath.data import (
    TOY_NAMES,
    make_gaussian_mixture,
    make_toy,
    random_gaussian_mixture,
)

F64 = torch.float64


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_shape_dtype_and_seeding(name):
    x = make_toy(name, 500, seed=3)
    assert x.shape == (500, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert torch.equal(x, make_toy(name, 500, seed=3))
    g = torch.Generator().manual_seed(3)
    assert torch.equal(x, make_toy(name, 500, generator=g))
    assert not torch.equal(x, make_toy(name, 500, seed=4))
    x64 = make_toy(name, 500, seed=3, dtype=F64)
    assert x64.dtype == F64 and torch.equal(x64.float(), x)
    # "roughly [-4, 4]": the central 99% of the mass lies within [-4.5, 4.5]
    q = torch.quantile(x64, torch.tensor([0.005, 0.995], dtype=F64), dim=0)
    assert q.abs().max() < 4.5


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(TOY_NAMES), n=st.integers(1, 50), seed=st.integers(0, 2**31))
def test_toy_reproducible_property(name, n, seed):
    a = make_toy(name, n, seed=seed, dtype=F64)
    assert a.shape == (n, 2)
    assert torch.equal(a, make_toy(name, n, seed=seed, dtype=F64))


def test_toy_errors():
    with pytest.raises(ValueError, match="moons"):
        make_toy("moon", 10)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        make_toy("moons", 0)
    with pytest.raises(ValueError, match="either generator or seed"):
        make_toy("moons", 5, seed=0, generator=torch.Generator())


def _nearest_sq_dist(x, centres):
    return torch.cdist(x, centres).min(1).values.pow(2)


def test_8gaussians_component_variance():
    # centres 4 (cos, sin)(k pi/4) / 1.414, sd 0.5 / 1.414; E|x - c|^2 = 2 sd^2 = 0.25 / 1.999396
    n = 20_000
    x = make_toy("8gaussians", n, seed=0, dtype=F64)
    a = torch.arange(8, dtype=F64) * math.pi / 4
    centres = 4 * torch.stack([a.cos(), a.sin()], 1) / 1.414
    d2 = _nearest_sq_dist(x, centres)  # centres are 6 sd apart: nearest = own, up to 1e-3
    sd2 = (0.5 / 1.414) ** 2
    # |x - c|^2 / sd^2 ~ chi2(2): mean 2, variance 4 -> sd of the mean 2 / sqrt(n)
    assert abs(float(d2.mean()) / sd2 - 2.0) < 5 * 2 / math.sqrt(n) + 0.01


def test_25gaussians_grid():
    n = 20_000
    x = make_toy("25gaussians", n, seed=0, dtype=F64)
    g = torch.arange(-4, 5, 2, dtype=F64)
    centres = torch.cartesian_prod(g, g)
    d2 = _nearest_sq_dist(x, centres) / 0.05**2
    assert abs(float(d2.mean()) - 2.0) < 5 * 2 / math.sqrt(n)
    counts = torch.bincount(torch.cdist(x, centres).argmin(1), minlength=25).to(F64)
    p = 1 / 25  # each count ~ Binomial(n, 1/25)
    assert (counts / n - p).abs().max() < 5 * math.sqrt(p * (1 - p) / n)


def test_checkerboard_parity_and_uniform_cells():
    # Derivation: x1/2 in [-2, 2), x2/2 = u - 2b + (floor(x1/2) mod 2) with u ~ U[0,1),
    # b in {0, 1}, so floor(x1/2) + floor(x2/2) is always even: only the 8 "black" cells.
    n = 16_000
    x = make_toy("checkerboard", n, seed=0, dtype=F64) / 2
    cells = torch.floor(x).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    assert x.min() >= -2 and x.max() < 2
    idx = (cells[:, 0] + 2) * 4 + (cells[:, 1] + 2)
    counts = torch.bincount(idx, minlength=16).to(F64)
    used = counts[counts > 0] / n
    assert len(used) == 8
    assert (used - 1 / 8).abs().max() < 5 * math.sqrt((1 / 8) * (7 / 8) / n)


def test_moons_mean():
    # Outer arc mean (0, 2/pi), inner arc (1, 0.5 - 2/pi): overall (0.5, 0.25); after
    # x * 2 + (-1, -0.2): (0, 0.3).
    n = 20_000
    x = make_toy("moons", n, seed=0, dtype=F64)
    se = x.std(0) / math.sqrt(n)
    assert ((x.mean(0) - torch.tensor([0.0, 0.3], dtype=F64)).abs() < 5 * se).all()


@pytest.mark.parametrize(
    ("name", "radii"), [("circles", [3.0, 1.5]), ("rings", [3.0, 2.4, 1.65, 0.75])]
)
def test_ring_radii_and_balance(name, radii):
    n = 20_000
    r = make_toy(name, n, seed=0, dtype=F64).norm(dim=1)
    radii_t = torch.tensor(radii, dtype=F64)
    which = (r[:, None] - radii_t).abs().argmin(1)
    p = 1 / len(radii)
    freq = torch.bincount(which, minlength=len(radii)).to(F64) / n
    # rings 0.75 apart with noise sd 0.24 (circles) / 0.08 (rings): misassignment < 1e-3
    assert (freq - p).abs().max() < 5 * math.sqrt(p * (1 - p) / n) + 2e-3


def _permutation_test_pvalue(x, y, n_perm, seed):
    """p-value of the unbiased MMD^2 (Gaussian kernel, median bandwidth) by permutation.

    The pooled kernel matrix ``K`` (zero diagonal) is computed once; with the 0/1 membership
    rows ``a`` of every permutation, the three sums of the statistic are the quadratic forms
    ``a K a``, ``b K b`` and ``a K b`` (``b = 1 - a``), all from one matrix product.
    """
    z = torch.cat([x, y])
    m, n = len(x), len(y)
    d2 = torch.cdist(z, z) ** 2
    h2 = float(d2[torch.triu_indices(len(z), len(z), 1).unbind()].median())
    k = torch.exp(-d2 / (2 * h2))
    k.fill_diagonal_(0.0)
    g = torch.Generator().manual_seed(seed)
    perms = [torch.arange(len(z))] + [torch.randperm(len(z), generator=g) for _ in range(n_perm)]
    a = torch.zeros(len(perms), len(z), dtype=k.dtype)
    for i, p in enumerate(perms):
        a[i, p[:m]] = 1.0
    b = 1.0 - a
    ak, bk = a @ k, b @ k
    stats = (
        (ak * a).sum(1) / (m * (m - 1))
        + (bk * b).sum(1) / (n * (n - 1))
        - 2 * (ak * b).sum(1) / (m * n)
    )
    return float((stats[1:] >= stats[0]).sum() + 1) / (1 + n_perm)


@pytest.mark.parametrize("name", ["moons", "circles", "swissroll"])
def test_toys_match_scikit_learn_definitions(name):
    """Our i.i.d. draws and FFJORD's maps of scikit-learn's generators are one distribution:
    a level-1% MMD permutation test does not reject (seeded, so deterministic)."""
    from sklearn import datasets

    n = 400
    rng = np.random.RandomState(0)
    if name == "moons":
        ref = datasets.make_moons(n, noise=0.1, random_state=rng)[0] * 2 + [-1, -0.2]
    elif name == "circles":
        ref = datasets.make_circles(n, factor=0.5, noise=0.08, random_state=rng)[0] * 3
    else:
        ref = datasets.make_swiss_roll(n, noise=1.0, random_state=rng)[0][:, [0, 2]] / 5
    ours = make_toy(name, n, seed=1, dtype=F64)
    p = _permutation_test_pvalue(ours, torch.from_numpy(ref), 99, seed=0)
    assert p > 0.01
    # and the test has power: the moons are not the circles
    other = make_toy("circles" if name != "circles" else "moons", n, seed=2, dtype=F64)
    assert _permutation_test_pvalue(ours, other, 99, seed=0) <= 0.01


def test_gaussian_mixture_matches_parameters():
    w, mu, cov = random_gaussian_mixture(3, 4, seed=1)
    n = 40_000
    draw = make_gaussian_mixture(n, w, mu, cov, torch.Generator().manual_seed(0))
    assert draw.x.shape == (n, 3) and draw.x.dtype == F64 and draw.labels.shape == (n,)
    freq = torch.bincount(draw.labels, minlength=4).to(F64) / n
    assert ((freq - w).abs() < 5 * torch.sqrt(w * (1 - w) / n)).all()
    for k in range(4):
        xk = draw.x[draw.labels == k]
        nk = len(xk)
        # mean: each coordinate has sd sqrt(cov_ii / n_k)
        se = torch.sqrt(torch.diagonal(cov[k]) / nk)
        assert ((xk.mean(0) - mu[k]).abs() < 5 * se).all()
        # covariance entries: Var(S_ij) = (S_ii S_jj + S_ij^2) / n_k for Gaussian data
        c = cov[k]
        se_c = torch.sqrt((torch.outer(c.diagonal(), c.diagonal()) + c**2) / nk)
        assert ((torch.cov(xk.T) - c).abs() < 5 * se_c).all()


def test_random_gaussian_mixture_is_valid_and_reproducible():
    w, mu, cov = random_gaussian_mixture(4, 5, seed=7)
    assert w.shape == (5,) and mu.shape == (5, 4) and cov.shape == (5, 4, 4)
    assert w.dtype == F64 and abs(float(w.sum()) - 1) < 1e-12 and (w > 0).all()
    assert torch.equal(cov, cov.transpose(1, 2))
    assert (torch.linalg.eigvalsh(cov) > 0).all()
    assert (mu.abs() <= 4).all()
    again = random_gaussian_mixture(4, 5, seed=7)
    assert all(torch.equal(a, b) for a, b in zip((w, mu, cov), again))


def test_gaussian_mixture_errors():
    w, mu, cov = random_gaussian_mixture(2, 3, seed=0)
    with pytest.raises(ValueError, match="sum to 1"):
        make_gaussian_mixture(5, w * 2, mu, cov)
    with pytest.raises(ValueError, match="covs must have shape"):
        make_gaussian_mixture(5, w, mu, cov[:, :1])
    with pytest.raises(ValueError, match="positive definite"):
        make_gaussian_mixture(5, w, mu, cov - 10 * torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match="weights must have shape"):
        make_gaussian_mixture(5, w[:2], mu, cov)
