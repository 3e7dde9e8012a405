"""Prediction hub round trips, fields (incl. EDM preconditioning) and the mixture oracle."""

from __future__ import annotations

import math

import pytest
import torch

from probpath.paths import (
    AffinePath,
    FunctionField,
    GaussianMixtureOracle,
    PathField,
    Prediction,
    convert,
    count_nfe,
    from_x0_eps,
    to_x0_eps,
)

PATHS = [
    AffinePath("ddpm"),
    AffinePath("ddpm", betas="cosine"),
    AffinePath("vp"),
    AffinePath("subvp"),
    AffinePath("ve"),
    AffinePath("linear"),
    AffinePath("linear", sigma_min=0.01),
    AffinePath("edm"),
]
IDS = ["ddpm", "ddpm-cos", "vp", "subvp", "ve", "linear", "linear-smin", "edm"]


def _oracle(path=None):
    means = torch.tensor([[-2.0, 0.5], [1.5, -1.0], [0.0, 2.0]], dtype=torch.float64)
    covs = torch.tensor(
        [[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.4]], [[0.25, -0.05], [-0.05, 0.15]]],
        dtype=torch.float64,
    )
    return GaussianMixtureOracle([0.5, 0.3, 0.2], means, covs, path)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_every_kind_round_trips_exactly(path, gen):
    # times with |log-SNR| <= 8, so alpha / sigma and sigma / alpha stay below e^4 and the
    # float64 round-off of the divisions stays far below the 1e-10 tolerance.
    lam = torch.rand(16, dtype=torch.float64, generator=gen) * 16 - 8
    t = path.t_from_log_snr(lam)
    x0 = torch.randn(16, 3, dtype=torch.float64, generator=gen)
    eps = torch.randn(16, 3, dtype=torch.float64, generator=gen)
    for kind in Prediction:
        x_t = path.sample(x0, t, eps=eps).x_t
        out = from_x0_eps(x0, eps, kind, x_t, t, path)
        x0_b, eps_b = to_x0_eps(out, kind, x_t, t, path)
        torch.testing.assert_close(x0_b, x0, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(eps_b, eps, rtol=1e-10, atol=1e-10)
        for dst in Prediction:
            there = convert(out, kind, dst, x_t, t, path)
            back = convert(there, dst, kind, x_t, t, path)
            torch.testing.assert_close(back, out, rtol=1e-9, atol=1e-9)


def test_conversions_match_the_definitions(gen):
    path = AffinePath("vp")
    x0 = torch.randn(4, 2, dtype=torch.float64, generator=gen)
    eps = torch.randn(4, 2, dtype=torch.float64, generator=gen)
    t = torch.full((4,), 0.3, dtype=torch.float64)
    s = path.sample(x0, t, eps=eps)
    a, sg = s.alpha[:, None], s.sigma[:, None]
    v = convert(eps, "eps", "v", s.x_t, t, path)
    torch.testing.assert_close(v, a * eps - sg * x0)
    torch.testing.assert_close(convert(eps, "eps", "score", s.x_t, t, path), -eps / sg)
    torch.testing.assert_close(convert(x0, "x0", "velocity", s.x_t, t, path), s.velocity)


def test_oracle_density_and_score_against_autograd_and_quadrature():
    o = _oracle()
    x = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for t in (0.0, 0.2, 0.7):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(o.log_prob(xr, t).sum(), xr)
        torch.testing.assert_close(o.score(x, t), g, rtol=1e-10, atol=1e-12)
    # the density integrates to one (grid quadrature, t = 0.3)
    grid = torch.linspace(-6, 6, 401, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.ravel(), yy.ravel()], 1)
    mass = o.log_prob(pts, 0.3).exp().sum() * (grid[1] - grid[0]) ** 2
    assert abs(float(mass) - 1.0) < 1e-6
    # t = 0: the plain mixture density
    comp = [
        torch.distributions.MultivariateNormal(o.means[k], o.covs[k]).log_prob(x) for k in range(3)
    ]
    ref = torch.logsumexp(torch.stack(comp, 1) + o.weights.log(), 1)
    torch.testing.assert_close(o.log_prob(x, 0.0), ref)


def test_oracle_posterior_mean_by_monte_carlo():
    # E[x0 | x_t] from Bayes' rule on a big sample of the joint, in a small bin around x_t.
    o = _oracle()
    gen = torch.Generator().manual_seed(3)
    n = 400_000
    x0 = o.sample(n, 0.0, generator=gen)
    t = torch.full((n,), 0.4, dtype=torch.float64)
    xt = o.path.sample(x0, t, generator=gen).x_t
    target = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    near = ((xt - target) ** 2).sum(1) < 0.1**2
    mc = x0[near].mean(0)
    se = x0[near].std(0) / math.sqrt(int(near.sum()))
    x0_hat, eps_hat = o.x0_eps(target, 0.4)
    assert ((mc - x0_hat[0]).abs() < 4 * se + 0.01).all()  # 0.01: bin-width bias bound
    v = o.path(torch.tensor([0.4], dtype=torch.float64))
    torch.testing.assert_close(v.alpha * x0_hat + v.sigma * eps_hat, target)


def test_oracle_marginal_moments(gen):
    o = _oracle(AffinePath("linear"))
    x = o.sample(200_000, 0.5, generator=gen)
    mean, cov = o.marginal_moments(0.5)
    assert (x.mean(0) - mean).abs().max() < 0.01
    assert (torch.cov(x.T) - cov).abs().max() < 0.01


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_oracle_predictions_are_consistent(path, gen):
    o = _oracle(path)
    x = torch.randn(10, 2, dtype=torch.float64, generator=gen)
    t = torch.rand(10, dtype=torch.float64, generator=gen) * 0.9 + 0.05
    x0_hat, eps_hat = o.x0_eps(x, t)
    torch.testing.assert_close(o.predict(x, t, "score"), o.score(x, t), rtol=1e-9, atol=1e-9)
    eps = o.predict(x, t, "eps")
    torch.testing.assert_close(convert(eps, "eps", "x0", x, t, path), x0_hat, rtol=1e-8, atol=1e-8)


def test_function_field_and_counting(gen):
    o = _oracle()
    f = FunctionField(lambda x, t: o.predict(x, t, "eps"), o.path, "eps")
    c = count_nfe(f)
    x = torch.randn(5, 2, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(c.predict(x, 0.3, "x0"), o.predict(x, 0.3, "x0"))
    c.x0_eps(x, 0.3)
    assert c.nfe == 2
    with pytest.raises(ValueError, match="prediction must be one of"):
        FunctionField(lambda x, t: x, o.path, "noise")


def test_edm_preconditioning_recovers_an_exact_denoiser(gen):
    # If F is the ideal residual (x0 - c_skip x~) / c_out, the preconditioned field is exact.
    o = _oracle(AffinePath("vp"))
    field = PathField(None, o.path, "x0", precondition=True)

    def net(x_in, c_noise, cond):
        s = torch.exp(4 * c_noise)  # sigma_tilde
        alpha = 1 / torch.sqrt(1 + s * s)  # VP: sigma_tilde = sigma / alpha
        c = field.preconditioning(o.path.t_from_log_snr(-2 * torch.log(s)))
        x_tilde = x_in / c["c_in"][:, None]
        x0 = o.x0_eps_at(alpha[:, None] * x_tilde, alpha, alpha * s)[0]
        return (x0 - c["c_skip"][:, None] * x_tilde) / c["c_out"][:, None]

    field.network = net
    x = torch.randn(6, 2, dtype=torch.float64, generator=gen)
    t = torch.linspace(0.1, 0.9, 6, dtype=torch.float64)
    torch.testing.assert_close(field.predict(x, t, "x0"), o.predict(x, t, "x0"))
    with pytest.raises(ValueError, match="prediction='x0'"):
        PathField(net, o.path, "eps", precondition=True)
