"""Empirical convergence order of every ODE sampler on the exact Gaussian-mixture field.

Setting: the linear (rectified-flow) path, 200 fixed starting points at t = 0.9 integrated to
t = 0.1 (no final jump to sigma = 0, so only the solver's own error is measured), against a
dopri5 solution with rtol = atol = 1e-11. The slope of log(RMS error) vs log(NFE) between the
two finest grids must be the method's order within 0.3.
"""

from __future__ import annotations

import math

import pytest
import torch

from probpath.paths import count_nfe
from probpath.sampling import SAMPLERS, make_grid, sample_adaptive

from .conftest import make_oracle

T0, T1 = 0.9, 0.1
# name: (order, spacing, (coarse, fine) steps in the asymptotic regime)
ORDERS = {
    "euler": (1, "uniform", (20, 40)),
    "ddim": (1, "log_snr", (20, 40)),
    "dpm_solver_1": (1, "log_snr", (20, 40)),
    "heun": (2, "uniform", (20, 40)),
    "edm_heun": (2, "edm", (20, 40)),
    "dpm_solver_2": (2, "log_snr", (20, 40)),
    "dpmpp_2m": (2, "log_snr", (20, 40)),
    "dpm_solver_3": (3, "log_snr", (5, 10)),
    # multistep: its first two steps are order 1 and 2 (as in Lu et al.); their error is
    # small at high noise, so the slope is ~3 until very fine grids
    "dpmpp_3m": (3, "log_snr", (20, 40)),
    "rk4": (4, "uniform", (20, 40)),
}


@pytest.fixture(scope="module")
def problem():
    oracle = make_oracle("linear")
    x = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = sample_adaptive(oracle, x, torch.tensor([T0, T1]), rtol=1e-11, atol=1e-11)
    return oracle, x, ref


@pytest.mark.parametrize("name", list(ORDERS))
def test_empirical_order(problem, name):
    oracle, x, ref = problem
    order, spacing, steps = ORDERS[name]
    errs, nfes = [], []
    for n in steps:
        ts = make_grid(oracle.path, n, spacing, t_max=T0, t_min=T1, final_zero=False)
        field = count_nfe(oracle)
        out = SAMPLERS[name](field, x, ts)
        errs.append(float((out - ref).pow(2).sum(1).mean().sqrt()))
        nfes.append(field.nfe)
    assert nfes[1] == 2 * nfes[0]
    slope = -math.log(errs[1] / errs[0]) / math.log(nfes[1] / nfes[0])
    assert abs(slope - order) <= 0.3, f"{name}: slope {slope:.2f}, errors {errs}"


@pytest.mark.parametrize("schedule", ["ddpm", "vp", "ve", "linear"])
def test_ddim_equals_dpm_solver_1(problem, schedule):
    _, x, _ = problem
    o = make_oracle(schedule)
    ts = make_grid(o.path, 10, "log_snr", t_max=0.95)
    a = SAMPLERS["ddim"](o, x, ts, eta=0.0)
    b = SAMPLERS["dpm_solver_1"](o, x, ts)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_final_step_extrapolation_is_second_order_in_sigma():
    # One isotropic Gaussian N(mu, s^2 I): the probability-flow ODE in x_tilde = x / alpha is
    # x_tilde(u) = mu + (x_tilde(u0) - mu) sqrt(s^2 + u^2) / sqrt(s^2 + u0^2), u = sigma_tilde.
    from probpath.paths import AffinePath, GaussianMixtureOracle

    mu, s = torch.tensor([[0.5, -1.0]], dtype=torch.float64), 0.3
    o = GaussianMixtureOracle(
        [1.0], mu, (s * s * torch.eye(2, dtype=torch.float64))[None], AffinePath("vp")
    )
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = o.path(torch.tensor(1.0, dtype=torch.float64))
    u0 = float(v.sigma / v.alpha)
    exact = mu + (x / v.alpha - mu) * s / math.sqrt(s * s + u0 * u0)
    errs = {}
    for extrap in (False, True):
        for sigma_min in (0.04, 0.02):
            ts = make_grid(o.path, 200, "log_snr", sigma_min=sigma_min)
            out = SAMPLERS["dpmpp_2m"](o, x, ts, final_extrapolate=extrap)
            errs[extrap, sigma_min] = float((out - exact).norm(dim=1).max())
    # plain denoising step: error ~ sigma_min^2 (halving sigma_min divides it by ~4)
    assert 3.5 < errs[False, 0.04] / errs[False, 0.02] < 4.5, errs
    # extrapolated linearly in sigma_tilde^2 the error is O(sigma_min^4): relative to the plain
    # step about (3/4) (sigma_min / s)^2 = 0.013 here (plus the solver's own ~1e-5)
    assert errs[True, 0.04] < 0.05 * errs[False, 0.04], errs
