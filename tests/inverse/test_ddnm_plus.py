"""DDNM+ (Wang et al. 2023, §3.3): the reduced re-noising and time travel.

The design rule of DDNM+ checked exactly: with a perfect data prediction ``x0_hat = x*`` and
``y = A x* + sigma_y n``, one step ``x_s = alpha_s x0_corrected + noise`` must be distributed as
the forward process ``q(x_s | x*) = N(alpha_s x*, sigma_s^2 I)``: along each singular direction
``v_i`` of ``A`` the correction brings ``lambda_i alpha_s sigma_y / s_i`` of y's noise and the
step's own noise is cut to make up the rest; where that noise exceeds ``sigma_s``
(``lambda_i < 1``) it is cut to exactly ``sigma_s``. Monte Carlo with ``N`` draws: the sample
variance along every direction has standard error ``sigma_s^2 sqrt(2 / (N - 1))``; we allow 5
standard errors, and the mean ``alpha_s x*`` to 5 of its standard errors ``sigma_s / sqrt(N)``.
"""

from __future__ import annotations

import math

import pytest
import torch

from probpath.inverse import ddnm, make_operator
from probpath.inverse.solvers import _ddnm_update
from probpath.paths.affine import AffinePath
from probpath.paths.oracle import GaussianMixtureOracle

DT = torch.float64


@pytest.mark.parametrize(
    "task, options, sigma_y, alpha_s, sigma_s",
    [
        ("project", {"m": 3}, 0.3, 0.8, 0.6),  # a mix of lambda_i = 1 and < 1 directions
        ("superres", {"factor": 2}, 0.2, 0.99, 0.05),  # sigma_s < carried: lambda_i < 1
        ("denoise", {}, 0.1, 0.5, 0.9),  # carried << sigma_s: lambda = 1, reduced noise
    ],
)
def test_ddnm_plus_step_keeps_the_forward_marginal(task, options, sigma_y, alpha_s, sigma_s):
    d, n = 6, 40_000
    op = make_operator(task, (d,), sigma_y=sigma_y, **options)
    g = torch.Generator().manual_seed(0)
    x_star = torch.randn(1, d, generator=g, dtype=DT).expand(n, d)
    y = op.observe(x_star, generator=g)
    z = torch.randn(n, d, generator=g, dtype=DT)
    x0, noise = _ddnm_update(op, y, x_star.clone(), sigma_s * z, alpha_s, sigma_s)
    x_s = alpha_s * x0 + noise
    dev = x_s - alpha_s * x_star
    cov = dev.T @ dev / (n - 1)
    tol_var = 5 * sigma_s**2 * math.sqrt(2 / (n - 1))
    assert torch.allclose(cov, sigma_s**2 * torch.eye(d, dtype=DT), atol=tol_var, rtol=0)
    assert dev.mean(0).abs().max() < 5 * sigma_s / math.sqrt(n)


def test_time_travel_counts_its_steps_and_keeps_the_measurement():
    # 20 steps, travel 5 back every 5 steps at steps 5, 10, 15 (not at the final step to
    # sigma = 0), twice each: 20 + 3 * 2 * 5 = 50 NFE; noiseless DDNM still ends on A x = y
    # to round-off (float64, O(1) values: atol 1e-9)
    g = torch.Generator().manual_seed(0)
    prior = GaussianMixtureOracle(
        torch.tensor([0.5, 0.5], dtype=DT),
        torch.randn(2, 8, generator=g, dtype=DT),
        torch.stack([0.3 * torch.eye(8, dtype=DT)] * 2),
        path=AffinePath("vp"),
    )
    op = make_operator("inpaint", (8,))
    y = op.forward(prior.sample(4, generator=g))
    out = ddnm(prior, op, y, steps=20, travel_length=5, travel_repeat=2, generator=g)
    assert out.nfe == 50
    assert torch.allclose(op.forward(out.x), y, atol=1e-9, rtol=0)


def test_ddnm_input_errors():
    op = make_operator("denoise", (2,), sigma_y=0.1)
    y = torch.zeros(3, 2, dtype=DT)
    prior = GaussianMixtureOracle([1.0], [[0.0, 0.0]], torch.eye(2, dtype=DT)[None])
    with pytest.raises(ValueError, match="travel_length"):
        ddnm(prior, op, y, travel_length=-1)
    with pytest.raises(ValueError, match="travel_repeat"):
        ddnm(prior, op, y, travel_length=2, travel_repeat=0)
    with pytest.raises(ValueError, match="sampler"):
        ddnm(prior, op, y, sampler="heun")
    with pytest.raises(ValueError, match="eta"):
        ddnm(prior, op, y, eta=-1.0)
