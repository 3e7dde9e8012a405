"""Stochastic samplers reproduce the oracle's moments; ancestral DDPM reproduces the mixture.

Tolerances are statistical: 4 standard errors of the sample mean / covariance entries,
estimated from the samples themselves (the discretisation bias at these step counts is far
below them).
"""

from __future__ import annotations

import math

import pytest
import torch

from probpath.sampling import make_grid, sample_path

from .conftest import make_oracle

N = 2000


def _check_moments(x, mean, cov):
    n = x.shape[0]
    m = x.mean(0)
    se_m = x.std(0) / math.sqrt(n)
    assert ((m - mean).abs() < 4 * se_m).all(), (m, mean, se_m)
    c = x - m
    prods = c[:, :, None] * c[:, None, :]  # (n, d, d)
    se_c = prods.std(0) / math.sqrt(n)
    assert ((prods.mean(0) - cov).abs() < 4 * se_c).all(), (prods.mean(0), cov, se_c)


CASES = [
    ("ancestral", {"variance": "beta_tilde"}, "vp", 200, "uniform"),
    ("ancestral", {"variance": "beta"}, "vp", 200, "uniform"),
    ("ddim", {"eta": 1.0}, "vp", 200, "uniform"),
    ("euler_maruyama", {}, "vp", 400, "uniform"),
    ("pc", {"snr": 0.1}, "vp", 200, "uniform"),
    ("edm_heun", {"churn": 10.0}, "edm", 60, "edm"),
    ("annealed_langevin", {"n_steps": 20, "step_size": 2e-4}, "ve", 20, "log_snr"),
]


@pytest.mark.parametrize("name,opts,schedule,steps,spacing", CASES, ids=[c[0] for c in CASES])
def test_stochastic_sampler_moments(name, opts, schedule, steps, spacing):
    o = make_oracle(schedule)
    gen = torch.Generator().manual_seed(7)
    out = sample_path(
        o,
        (N, 2),
        sampler=name,
        steps=steps,
        grid=spacing,
        generator=gen,
        dtype=torch.float64,
        **opts,
    )
    t_end = float(out.ts[-1])
    mean, cov = o.marginal_moments(t_end)
    assert torch.isfinite(out.x).all()
    _check_moments(out.x, mean, cov)


@pytest.mark.slow
def test_1000_step_ancestral_ddpm_reproduces_the_mixture():
    o = make_oracle("ddpm")
    ts = make_grid(o.path, 1000, "uniform")  # t = i / 1000, then the final step to x0
    assert torch.allclose(ts[:-1], torch.arange(1000, 0, -1, dtype=torch.float64) / 1000)
    gen = torch.Generator().manual_seed(3)
    out = sample_path(o, (N, 2), sampler="ancestral", grid=ts, generator=gen, dtype=torch.float64)
    assert out.nfe == 1000
    mean, cov = o.marginal_moments(0.0)
    _check_moments(out.x, mean, cov)
    # the mean log-density of the samples matches that of exact mixture samples (z-test)
    ref = o.sample(N, generator=torch.Generator().manual_seed(4))
    lp, lp_ref = o.log_prob(out.x), o.log_prob(ref)
    se = math.sqrt(lp.var() / N + lp_ref.var() / N)
    assert abs(float(lp.mean() - lp_ref.mean())) < 4 * se
    # mode weights: the share of samples nearest each component's mean
    near = torch.cdist(out.x, o.means).argmin(1)
    share = torch.bincount(near, minlength=3).double() / N
    near_ref = torch.cdist(ref, o.means).argmin(1)
    share_ref = torch.bincount(near_ref, minlength=3).double() / N
    se_w = torch.sqrt(2 * share_ref * (1 - share_ref) / N)
    assert ((share - share_ref).abs() < 4 * se_w).all()
