"""Probability-flow ODE likelihood (Eq. 55) against the oracle's closed-form density."""

from __future__ import annotations

import math

import pytest
import torch

from probpath.sampling import divergence, field_log_prob, ode_log_prob

from .conftest import make_oracle

T0, T1 = 0.01, 1.0


@pytest.mark.parametrize("schedule", ["linear", "vp"])
def test_exact_trace_matches_the_closed_form(schedule):
    o = make_oracle(schedule)
    x = o.sample(16, T0, generator=torch.Generator().manual_seed(0))
    res = field_log_prob(
        o, x, t0=T0, t1=T1, prior_log_prob=lambda z: o.log_prob(z, T1), rtol=1e-7, atol=1e-7
    )
    per_dim = (res.log_prob - o.log_prob(x, T0)).abs().max() / 2
    assert per_dim < 1e-3
    assert res.nfe > 0
    torch.testing.assert_close(res.log_prob, res.prior_log_prob + res.delta_log_prob)


def test_default_prior_and_grid_solve():
    # linear path: x_1 = eps exactly, so the path's own N(0, I) prior is exact
    o = make_oracle("linear")
    x = o.sample(8, T0, generator=torch.Generator().manual_seed(1))
    res = field_log_prob(o, x, t0=T0, steps=100)
    assert res.nfe == 400  # rk4: 4 evaluations per step
    assert ((res.log_prob - o.log_prob(x, T0)).abs() / 2 < 1e-3).all()


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_within_three_standard_errors(noise):
    o = make_oracle("linear")
    x1 = o.sample(1, T0, generator=torch.Generator().manual_seed(2))
    x = x1.expand(256, 2).clone()  # one point, 256 independent probes
    res = field_log_prob(
        o,
        x,
        t0=T0,
        trace="hutchinson",
        noise=noise,
        generator=torch.Generator().manual_seed(3),
        rtol=1e-6,
        atol=1e-6,
    )
    exact = float(o.log_prob(x1, T0)[0])
    se = float(res.log_prob.std()) / math.sqrt(256)
    assert abs(float(res.log_prob.mean()) - exact) < 3 * se
    assert se > 0


def test_divergence_of_a_linear_field():
    a = torch.tensor([[1.0, 2.0, 0.0], [0.5, -3.0, 1.0], [0.0, 0.0, 4.0]], dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    div, frob = divergence(x @ a.T, x)
    torch.testing.assert_close(div, torch.full((5,), 2.0, dtype=torch.float64))
    assert frob is None


def test_linear_flow_closed_form_and_differentiable():
    # v(x, t) = -k x: x(1) = e^{-k} x(0); log p0(x) = log N(e^{-k} x) - d k (exact).
    k = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    prior = torch.distributions.Normal(0.0, 1.0)
    res = ode_log_prob(
        lambda y, t: -k * y,
        x,
        lambda z: prior.log_prob(z).sum(1),
        differentiable=True,
        rtol=1e-9,
        atol=1e-9,
        regularize=True,
        trace="hutchinson",
        generator=torch.Generator().manual_seed(1),
    )
    ref = prior.log_prob(torch.exp(-k) * x).sum(1) - 3 * k
    torch.testing.assert_close(res.log_prob, ref, rtol=1e-7, atol=1e-7)
    (g,) = torch.autograd.grad(res.log_prob.sum(), k)
    (g_ref,) = torch.autograd.grad(ref.sum(), k)
    torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-6)
    # kinetic energy: int_0^1 k^2 e^{-2kt} |x|^2 dt = k (1 - e^{-2k}) |x|^2 / 2
    kin = k * (1 - torch.exp(-2 * k)) * (x * x).sum(1) / 2
    torch.testing.assert_close(res.kinetic, kin.detach(), rtol=1e-6, atol=1e-6)
    # Rademacher probes: ||z^T (-k I)||^2 = 3 k^2 exactly
    torch.testing.assert_close(
        res.jacobian_frobenius, torch.full((6,), 3 * 0.49, dtype=torch.float64)
    )


def test_validation():
    o = make_oracle("linear")
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="trace"):
        field_log_prob(o, x, trace="skilling")
    with pytest.raises(ValueError, match="t0 < t1"):
        field_log_prob(o, x, t0=0.5, t1=0.2)
    with pytest.raises(ValueError, match="NaN"):
        field_log_prob(o, torch.full((2, 2), float("nan")))
