"""Two-sample metrics against closed forms, independent implementations and statistics."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import scipy.linalg
import scipy.stats
import torch
from scipy.spatial.distance import pdist

from probpath.metrics import (
    energy_distance,
    frechet_distance,
    frechet_distance_gaussian,
    median_bandwidth,
    mmd,
    noise_floor,
    sliced_wasserstein,
    wasserstein_1d,
)

F64 = torch.float64


def _randn(g, *shape):
    return torch.randn(*shape, generator=g, dtype=F64)


# ----------------------------------------------------------------------------- MMD
def test_mmd_point_masses_closed_form():
    # x = m copies of a, y = n copies of b: the within-sample kernel averages are 1 and the
    # cross average exp(-|a-b|^2 / 2h^2), so MMD^2 = sum_l 2 (1 - exp(-|a-b|^2 / 2h_l^2)).
    a, b = torch.tensor([0.0, 1.0], dtype=F64), torch.tensor([3.0, -1.0], dtype=F64)
    x, y = a.repeat(4, 1), b.repeat(6, 1)
    d2 = float((a - b).pow(2).sum())
    assert mmd(x, y, bandwidth=2.0) == pytest.approx(2 * (1 - math.exp(-d2 / 8)), abs=1e-12)
    expected = sum(2 * (1 - math.exp(-d2 / (2 * h * h))) for h in (0.5, 1.0, 4.0))
    assert mmd(x, y, bandwidth=[0.5, 1.0, 4.0]) == pytest.approx(expected, abs=1e-12)
    assert mmd(x, a.repeat(3, 1), bandwidth=1.0) == pytest.approx(0.0, abs=1e-12)


def test_mmd_matches_direct_formula_and_median_heuristic():
    g = torch.Generator().manual_seed(0)
    x, y = _randn(g, 30, 3), _randn(g, 17, 3) + 0.3
    xn, yn = x.numpy(), y.numpy()
    h = float(np.median(pdist(np.concatenate([xn, yn]))))
    assert median_bandwidth(x, y) == pytest.approx(h, rel=1e-12)

    def k(u, v):
        return np.exp(-((u[:, None] - v[None]) ** 2).sum(-1) / (2 * h * h))

    kxx, kyy = k(xn, xn), k(yn, yn)
    m, n = len(xn), len(yn)
    direct = (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * k(xn, yn).mean()
    )
    assert mmd(x, y) == pytest.approx(direct, abs=1e-12)


def test_mmd_is_unbiased_for_equal_distributions():
    # The U-statistic has expectation exactly 0 when x and y share a distribution; over R
    # independent repeats the mean must lie within 4 standard errors of 0.
    g = torch.Generator().manual_seed(1)
    vals = torch.tensor([mmd(_randn(g, 40, 2), _randn(g, 40, 2), bandwidth=1.0) for _ in range(60)])
    se = vals.std() / math.sqrt(len(vals))
    assert abs(float(vals.mean())) < 4 * float(se)
    assert (vals < 0).any()  # unbiased, hence sometimes negative
    shifted = mmd(_randn(g, 40, 2), _randn(g, 40, 2) + 1.5, bandwidth=1.0)
    assert shifted > float(vals.max())


# ----------------------------------------------------------------------------- energy
def test_energy_point_masses():
    a, b = torch.zeros(3), torch.tensor([1.0, 2.0, 2.0])  # |a - b| = 3
    x, y = a.repeat(5, 1), b.repeat(4, 1)
    assert energy_distance(x, y) == pytest.approx(6.0, abs=1e-9)
    assert energy_distance(x, y, unbiased=False) == pytest.approx(6.0, abs=1e-9)


def test_energy_v_statistic_matches_scipy():
    g = torch.Generator().manual_seed(2)
    u, v = _randn(g, 50), _randn(g, 31) * 2 + 0.5
    ours = energy_distance(u, v, unbiased=False)
    assert math.sqrt(ours) == pytest.approx(scipy.stats.energy_distance(u, v), rel=1e-10)


def test_energy_gaussian_closed_form():
    # X ~ N(0,1), Y ~ N(mu,1): X - Y ~ N(-mu, 2), X - X' ~ N(0, 2). For Z ~ N(c, s^2),
    # E|Z| = s sqrt(2/pi) exp(-c^2 / 2s^2) + c (1 - 2 Phi(-c/s)).
    mu, s = 1.0, math.sqrt(2.0)

    def abs_mean(c):
        return s * math.sqrt(2 / math.pi) * math.exp(-(c**2) / (2 * s * s)) + c * (
            1 - 2 * scipy.stats.norm.cdf(-c / s)
        )

    truth = 2 * abs_mean(mu) - 2 * abs_mean(0.0)
    g = torch.Generator().manual_seed(3)
    vals = torch.tensor([energy_distance(_randn(g, 150), _randn(g, 150) + mu) for _ in range(30)])
    se = float(vals.std()) / math.sqrt(len(vals))
    assert abs(float(vals.mean()) - truth) < 4 * se


# ----------------------------------------------------------------------------- sliced W
def test_sliced_w2_of_a_shifted_copy_is_exact():
    # Sorting commutes with a shift: W2^2 along theta is exactly (theta . m)^2.
    g = torch.Generator().manual_seed(4)
    x, m = _randn(g, 300, 3), torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    theta = _randn(g, 64, 3)
    theta = theta / theta.norm(dim=1, keepdim=True)
    sw = sliced_wasserstein(x, x + m, projections=theta)
    assert sw**2 == pytest.approx(float((theta @ m).pow(2).mean()), rel=1e-10)


def test_sliced_w2_gaussian_shift_averages_over_the_sphere():
    # For theta uniform on S^{d-1}: E (theta . m)^2 = |m|^2 / d; (theta . m)^2 / |m|^2 is
    # Beta(1/2, (d-1)/2) with variance 2(d-1) / (d^2 (d+2)): Monte Carlo tolerance 4 sd.
    d, n_proj = 4, 4000
    g = torch.Generator().manual_seed(5)
    x, m = _randn(g, 200, d), torch.tensor([1.0, 2.0, 0.0, -1.0], dtype=F64)
    norm2 = float(m.pow(2).sum())
    sw2 = sliced_wasserstein(x, x + m, n_projections=n_proj, generator=g) ** 2
    sd = norm2 * math.sqrt(2 * (d - 1) / (d * d * (d + 2)) / n_proj)
    assert abs(sw2 - norm2 / d) < 4 * sd


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_sliced_wasserstein_matches_pot_for_unequal_sizes(p):
    g = torch.Generator().manual_seed(6)
    x, y = _randn(g, 120, 3), _randn(g, 77, 3) * 1.5 + 0.3
    theta = _randn(g, 40, 3)
    theta = theta / theta.norm(dim=1, keepdim=True)
    ref = ot.sliced_wasserstein_distance(x.numpy(), y.numpy(), projections=theta.T.numpy(), p=p)
    assert sliced_wasserstein(x, y, projections=theta, p=p) == pytest.approx(ref, rel=1e-10)


def test_wasserstein_1d_matches_scipy():
    g = torch.Generator().manual_seed(7)
    u, v = _randn(g, 53, 1), _randn(g, 20, 1) + 1
    ref = scipy.stats.wasserstein_distance(u[:, 0].numpy(), v[:, 0].numpy())
    assert float(wasserstein_1d(u, v, p=1)) == pytest.approx(ref, rel=1e-12)
    # equal sizes: mean of |sorted differences|^p
    w = _randn(g, 53, 1) * 3
    direct = (torch.sort(u, 0).values - torch.sort(w, 0).values).pow(2).mean()
    assert float(wasserstein_1d(u, w)) == pytest.approx(float(direct), rel=1e-12)
    # unequal sizes reduce to equal ones when each point of v is repeated
    assert float(wasserstein_1d(u[:10], u[:10].repeat(3, 1), p=2)) == pytest.approx(0, abs=1e-15)


def test_sliced_wasserstein_is_seeded():
    g = torch.Generator().manual_seed(8)
    x, y = _randn(g, 50, 2), _randn(g, 50, 2)
    a = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(1))
    assert a == sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- Frechet
def test_frechet_diagonal_closed_form():
    # Commuting (diagonal) covariances: tr(C1 + C2 - 2 (C1 C2)^1/2) = sum (sqrt a - sqrt b)^2.
    a, b = torch.tensor([1.0, 4.0, 0.25], dtype=F64), torch.tensor([9.0, 1.0, 0.25], dtype=F64)
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0], dtype=F64), torch.tensor([1.0, 1.0, 0.0], dtype=F64)
    expected = 1 + 0 + 4 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0
    got = frechet_distance_gaussian(mu1, torch.diag(a), mu2, torch.diag(b))
    assert got == pytest.approx(expected, abs=1e-12)


def test_frechet_general_covariances_match_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    cross = scipy.linalg.sqrtm(c1 @ c2).real
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * cross)
    assert frechet_distance_gaussian(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance_gaussian(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_samples_uses_mean_and_unbiased_covariance():
    g = torch.Generator().manual_seed(9)
    x, y = _randn(g, 40, 3), _randn(g, 60, 3) * 2
    xn, yn = x.numpy(), y.numpy()
    ref = frechet_distance_gaussian(xn.mean(0), np.cov(xn.T), yn.mean(0), np.cov(yn.T))
    assert frechet_distance(x, y) == pytest.approx(ref, rel=1e-12)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


# ----------------------------------------------------------------------------- floor
@pytest.mark.parametrize(
    "metric",
    [
        lambda a, b: mmd(a, b, bandwidth=1.0),
        energy_distance,
        frechet_distance,
        lambda a, b: sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(0)),
    ],
    ids=["mmd", "energy", "frechet", "sliced"],
)
def test_same_distribution_sits_at_the_floor_and_a_shift_rises_above(metric):
    def sampler(n, g):
        return torch.randn(n, 2, generator=g, dtype=F64)

    floor = noise_floor(sampler, 200, metric, repeats=3, generator=torch.Generator().manual_seed(0))
    again = noise_floor(sampler, 200, metric, repeats=3, generator=torch.Generator().manual_seed(0))
    assert floor == again
    g = torch.Generator().manual_seed(1)
    shifted = metric(sampler(200, g), sampler(200, g) + 1.0)
    assert shifted > 5 * abs(floor)


def test_noise_floor_is_the_metric_of_two_fresh_draws():
    def sampler(n, g):
        return torch.rand(n, 3, generator=g, dtype=F64)

    got = noise_floor(sampler, 30, energy_distance, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    assert got == energy_distance(sampler(30, g), sampler(30, g))
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        noise_floor(sampler, 30, energy_distance, repeats=0)


# ----------------------------------------------------------------------------- inputs
def test_metric_input_errors():
    x = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="same number of values per sample"):
        mmd(x, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="NaN"):
        energy_distance(x, torch.full((5, 2), float("nan")))
    with pytest.raises(ValueError, match="at least 2 samples"):
        mmd(x, x[:1])
    with pytest.raises(ValueError, match="kernel must be 'rbf'"):
        mmd(x, x, kernel="laplace")
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        mmd(x, x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="p must be >= 1"):
        sliced_wasserstein(x, x, p=0.5)
    with pytest.raises(ValueError, match="empty"):
        sliced_wasserstein(x[:0], x)


def test_images_are_flattened():
    g = torch.Generator().manual_seed(10)
    x, y = _randn(g, 20, 1, 3, 3), _randn(g, 20, 1, 3, 3)
    assert energy_distance(x, y) == energy_distance(x.reshape(20, 9), y.reshape(20, 9))
