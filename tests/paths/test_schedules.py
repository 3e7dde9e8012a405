"""Schedules: hand-written derivatives vs autograd, SDE marginals, DDPM products (survey §2.4)."""

from __future__ import annotations

import math

import pytest
import torch

from probpath.paths import (
    AffinePath,
    DDPMSchedule,
    EDMSchedule,
    LinearSchedule,
    SubVPSchedule,
    VESchedule,
    VPSchedule,
    make_schedule,
)

SCHEDULES = [
    DDPMSchedule(),
    DDPMSchedule(betas="cosine"),
    VPSchedule(),
    SubVPSchedule(),
    VESchedule(),
    LinearSchedule(),
    LinearSchedule(sigma_min=1e-2),
    EDMSchedule(),
]
IDS = ["ddpm", "ddpm-cos", "vp", "subvp", "ve", "linear", "linear-smin", "edm"]
# interior times (the VP family's sigma' is infinite at t = 0 and the linear alpha is 0 at 1)
T = torch.linspace(0.013, 0.987, 41, dtype=torch.float64)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_derivatives_match_autograd(schedule):
    t = T.clone().requires_grad_(True)
    v = schedule(t)
    # alpha may be a constant (VE, EDM): its autograd derivative is then zero.
    alpha = v.alpha if v.alpha.requires_grad else v.alpha + 0.0 * t
    (d_alpha,) = torch.autograd.grad(alpha.sum(), t, retain_graph=True)
    (d_sigma,) = torch.autograd.grad(v.sigma.sum(), t)
    torch.testing.assert_close(v.d_alpha, d_alpha, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(v.d_sigma, d_sigma, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_sde_reproduces_the_marginals(schedule):
    # d(sigma^2)/dt = 2 f sigma^2 + g^2 and d(alpha)/dt = f alpha (Eq. 42 moments).
    v = schedule(T)
    f, g = schedule.sde(T)
    torch.testing.assert_close(
        2 * v.sigma * v.d_sigma, 2 * f * v.sigma**2 + g**2, rtol=1e-10, atol=1e-12
    )
    torch.testing.assert_close(v.d_alpha, f * v.alpha, rtol=1e-12, atol=1e-12)
    assert (g > 0).all()


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_log_snr_inverse_round_trip(schedule):
    lam = schedule.log_snr(T)
    assert (lam[1:] < lam[:-1]).all(), "log-SNR must decrease with t"
    torch.testing.assert_close(schedule.t_from_log_snr(lam), T, rtol=1e-9, atol=1e-10)
    v = schedule(T)
    torch.testing.assert_close(lam, 2 * torch.log(v.alpha / v.sigma), rtol=1e-10, atol=1e-10)


def test_ddpm_alpha_bar_is_the_product_of_eq37():
    s = DDPMSchedule()
    beta = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    prod = torch.cumprod(1 - beta, 0)
    i = torch.arange(1, 1001, dtype=torch.float64)
    v = s(i / 1000)
    torch.testing.assert_close(v.alpha**2, prod, rtol=1e-12, atol=0)
    torch.testing.assert_close(v.sigma**2, 1 - prod, rtol=1e-12, atol=1e-15)
    assert float(s(torch.tensor(0.0, dtype=torch.float64)).alpha) == 1.0


def test_ddpm_cosine_matches_nichol_dhariwal_where_unclipped():
    s = DDPMSchedule(betas="cosine")
    i = torch.arange(1, 900, dtype=torch.float64)
    f = torch.cos((i / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    f0 = math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(s(i / 1000).alpha ** 2, f / f0, rtol=1e-10, atol=0)


def test_closed_forms_of_the_continuous_schedules():
    t = T
    vp = VPSchedule()(t)
    torch.testing.assert_close(vp.alpha**2, torch.exp(-(0.1 * t + 0.5 * 19.9 * t * t)))
    torch.testing.assert_close(vp.alpha**2 + vp.sigma**2, torch.ones_like(t))
    sub = SubVPSchedule()(t)
    torch.testing.assert_close(sub.sigma, 1 - vp.alpha**2)
    ve = VESchedule(0.01, 50.0)(t)
    torch.testing.assert_close(ve.sigma, 0.01 * 5000.0**t)
    lin = LinearSchedule()(t)
    torch.testing.assert_close(lin.alpha + lin.sigma, torch.ones_like(t))
    edm = EDMSchedule()
    assert abs(float(edm(torch.tensor(edm.t_min, dtype=torch.float64)).sigma) - 0.002) < 1e-12


def test_path_sample_velocity_is_the_time_derivative(gen):
    path = AffinePath("vp")
    x0 = torch.randn(8, 3, dtype=torch.float64, generator=gen)
    eps = torch.randn(8, 3, dtype=torch.float64, generator=gen)
    t = torch.rand(8, dtype=torch.float64, generator=gen) * 0.9 + 0.05
    h = 1e-6
    up = path.sample(x0, t + h, eps=eps).x_t
    down = path.sample(x0, t - h, eps=eps).x_t
    s = path.sample(x0, t, eps=eps)
    torch.testing.assert_close(s.velocity, (up - down) / (2 * h), rtol=1e-6, atol=1e-7)


def test_prior_log_prob_is_the_standard_normal(gen):
    path = AffinePath("ve", sigma_min=0.01, sigma_max=3.0)
    x = path.prior_sample((5, 2), generator=gen, dtype=torch.float64)
    ref = torch.distributions.Normal(0.0, 3.0).log_prob(x).sum(1)
    torch.testing.assert_close(path.prior_log_prob(x), ref)


def test_config_round_trip_and_errors():
    for s in SCHEDULES:
        assert make_schedule(**s.config()) == s
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_schedule("nope")
    with pytest.raises(ValueError, match="betas"):
        DDPMSchedule(betas="quadratic")
    with pytest.raises(ValueError, match="t must have shape"):
        AffinePath("vp").sample(torch.zeros(3, 2), torch.zeros(2))
