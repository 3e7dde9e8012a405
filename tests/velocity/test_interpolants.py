"""Stochastic interpolants: the GVP schedule in closed form, and the SDE family with a tunable
``w(t)`` keeping the oracle's marginals (derivation in ``probpath.velocity.interpolants``)."""

from __future__ import annotations

import math

import pytest
import torch

from probpath.paths.affine import AffinePath
from probpath.paths.oracle import GaussianMixtureOracle
from probpath.paths.schedules import GVPSchedule, make_schedule
from probpath.sampling.ode import sample_euler
from probpath.sampling.sde import sample_euler_maruyama
from probpath.sampling.timesteps import make_grid
from probpath.velocity.interpolants import (
    StochasticInterpolant,
    diffusion_coefficient,
    sample_interpolant_sde,
)

DT = torch.float64
T = torch.linspace(0.013, 0.987, 41, dtype=DT)
Z = 4.0  # two-sided p ~ 6e-5 per check


def _oracle(schedule):
    return GaussianMixtureOracle(
        [0.6, 0.4],
        [[-1.0, 0.5], [1.0, -0.5]],
        [[[0.20, 0.05], [0.05, 0.10]], [[0.10, -0.03], [-0.03, 0.15]]],
        path=AffinePath(schedule),
    )


# -- the GVP schedule ---------------------------------------------------------------------------
def test_gvp_closed_form_and_derivatives():
    s = make_schedule("gvp")
    assert isinstance(s, GVPSchedule) and s == GVPSchedule()
    t = T.clone().requires_grad_(True)
    v = s(t)
    torch.testing.assert_close(v.alpha, torch.cos(math.pi * T / 2), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(v.sigma, torch.sin(math.pi * T / 2), rtol=1e-14, atol=1e-15)
    (d_alpha,) = torch.autograd.grad(v.alpha.sum(), t, retain_graph=True)
    (d_sigma,) = torch.autograd.grad(v.sigma.sum(), t)
    torch.testing.assert_close(v.d_alpha, d_alpha, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(v.d_sigma, d_sigma, rtol=1e-12, atol=1e-14)
    # variance preserving: alpha^2 + sigma^2 = 1; exact ends in float32 too
    torch.testing.assert_close(v.alpha**2 + v.sigma**2, torch.ones_like(T))
    ends = s(torch.tensor([0.0, 1.0]))
    assert ends.alpha.tolist() == [1.0, 0.0] and ends.sigma.tolist() == [0.0, 1.0]


def test_gvp_log_snr_inverse_and_sde():
    s = GVPSchedule()
    lam = s.log_snr(T)
    assert (lam[1:] < lam[:-1]).all()
    torch.testing.assert_close(s.t_from_log_snr(lam), T, rtol=1e-12, atol=1e-12)
    # Eq. 42 moments: d(sigma^2)/dt = 2 f sigma^2 + g^2, alpha' = f alpha
    v, (f, g) = s(T), s.sde(T)
    torch.testing.assert_close(2 * v.sigma * v.d_sigma, 2 * f * v.sigma**2 + g**2)
    torch.testing.assert_close(v.d_alpha, f * v.alpha)
    # closed form: g^2 = pi tan(pi t / 2)
    torch.testing.assert_close(g**2, math.pi * torch.tan(math.pi * T / 2))


# -- special cases of the SDE family --------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["gvp", "linear"])
def test_w_zero_is_the_probability_flow_ode(schedule):
    oracle = _oracle(schedule)
    ts = make_grid(oracle.path, 20, "uniform", t_min=0.0)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    a = sample_interpolant_sde(oracle, x, ts, diffusion="zero")
    b = sample_euler(oracle, x, ts)  # Euler on dx/dt = v, the same steps
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_w_equal_g_is_the_reverse_sde_of_score_sdes():
    # v - (g^2 / 2) score = f x - g^2 score (module docstring): the step is Euler-Maruyama on
    # Eq. 43, drawing the same noise in the same order
    oracle = _oracle("vp")
    ts = make_grid(oracle.path, 30, "uniform")
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=DT)
    a = sample_interpolant_sde(
        oracle, x, ts, diffusion="sde", generator=torch.Generator().manual_seed(2)
    )
    b = sample_euler_maruyama(oracle, x, ts, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# -- every w(t) keeps the marginals -----------------------------------------------------------
N, STEPS = 10_000, 200
CHECK_T = (0.75, 0.5, 0.25, 0.0)


def _run(oracle, diffusion, scale, seed, step=None):
    """Sample from the prior at t = 1 and record x at the CHECK_T times."""
    ts = make_grid(oracle.path, STEPS, "uniform", t_min=0.0)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 2, generator=g, dtype=DT)  # the marginal at t = 1: alpha(1) = 0
    seen = {}

    def record(info):
        t_next = round(info["t_next"], 6)
        if t_next in CHECK_T:
            seen[t_next] = info["x"].clone()

    sampler = step or sample_interpolant_sde
    sampler(oracle, x, ts, generator=g, callback=record, diffusion=diffusion, scale=scale)
    return seen


def _moment_z_scores(oracle, seen):
    """Largest |z| of the sample mean and covariance entries vs the exact moments; the s.e.
    of each is the sample s.d. of the per-sample terms over sqrt(N)."""
    worst = 0.0
    for t, x in seen.items():
        mean, cov = oracle.marginal_moments(t)
        m = x.mean(0)
        worst = max(worst, float(((m - mean).abs() / (x.std(0) / math.sqrt(N))).max()))
        c = x - m
        for i in range(2):
            for j in range(i + 1):
                terms = c[:, i] * c[:, j]
                z = abs(float(terms.mean()) - float(cov[i, j])) / float(terms.std() / math.sqrt(N))
                worst = max(worst, z)
    return worst


@pytest.mark.parametrize("schedule", ["gvp", "linear"])
@pytest.mark.parametrize(
    "diffusion, scale",
    [("zero", 1.0), ("sigma", 1.0), ("sigma", 2.0), (lambda t: 0.7, 1.0)],
    ids=["ode", "sigma", "2sigma", "const0.7"],
)
def test_every_w_keeps_the_marginal_moments(schedule, diffusion, scale):
    # Euler(-Maruyama) with h = 1/200 has a weak error O(h), below the Monte Carlo s.e. of
    # N = 10,000 samples (1% of a standard deviation; at h = 1/100 the largest |z| of the 20
    # checks per case rose to 3.0, at 1/200 it is <= 2.3, as expected of 20 draws of N(0, 1));
    # Z = 4 on each of the 20 moments: p ~ 1e-3 per case.
    oracle = _oracle(schedule)
    seen = _run(oracle, diffusion, scale, seed=3)
    assert sorted(seen) == sorted(CHECK_T)
    assert _moment_z_scores(oracle, seen) < Z


def _noise_without_correction(field, x, ts, *, generator, callback, diffusion, scale):
    """A wrong sampler for the power check: adds w dW but not the (w^2 / 2) score drift."""
    from probpath.sampling.timesteps import GridValues

    g = GridValues.from_path(field.path, ts)
    for i in range(len(g) - 1):
        t = torch.full((len(x),), g.t[i], dtype=x.dtype)
        x0, eps = field.x0_eps(x, t, values=g[i])
        h, w = g.t[i] - g.t[i + 1], diffusion_coefficient(diffusion, g.t[i], field.path, scale)
        x = x - h * (g.d_alpha[i] * x0 + g.d_sigma[i] * eps)
        x = x + w * math.sqrt(h) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        callback({"i": i, "t": g.t[i], "t_next": g.t[i + 1], "x": x})
    return x


def test_dropping_the_score_correction_breaks_the_marginals():
    # power check: without the drift correction the variance grows by about int w^2 dt, which
    # the same statistic flags
    oracle = _oracle("gvp")
    seen = _run(oracle, "sigma", 1.0, seed=4, step=_noise_without_correction)
    assert _moment_z_scores(oracle, seen) > Z  # observed: about 23


# -- the model ----------------------------------------------------------------------------------
def test_model_path_loss_and_seeded_sde_sampling():
    torch.manual_seed(0)
    m = StochasticInterpolant((2,), network={"hidden": [8]})
    assert m.path.schedule == GVPSchedule() and m.field.path is m.path
    assert m.loss(torch.randn(5, 2)).shape == (5,)
    a = m.sample_sde(4, steps=6, generator=torch.Generator().manual_seed(1))
    b = m.sample_sde(4, steps=6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (4, 2) and m.sampling_nfe == 6
    linear = StochasticInterpolant((2,), interpolant="linear", network={"hidden": [8]})
    assert linear.path.schedule == make_schedule("linear")


def test_bad_options():
    with pytest.raises(ValueError, match="interpolant"):
        StochasticInterpolant((2,), interpolant="cosine")
    with pytest.raises(ValueError, match="diffusion"):
        StochasticInterpolant((2,), diffusion="loud")
    with pytest.raises(ValueError, match="start the grid below"):
        diffusion_coefficient("sde", 1.0, AffinePath("gvp"))
    with pytest.raises(ValueError, match="scale"):
        sample_interpolant_sde(_oracle("gvp"), torch.zeros(2, 2), [1.0, 0.0], scale=-1.0)
