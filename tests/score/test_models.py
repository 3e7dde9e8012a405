"""DDPM, NCSN and ScoreSDE models: wiring checked with the exact Gaussian-mixture field.

A model whose network is replaced by the oracle (the exact prediction of a known mixture)
must give the closed-form log-density through ``log_prob`` (probability-flow ODE, Eq. 55)
and samples with the mixture's moments through its default sampler. One slow test trains a
DDPM on Gaussian data and compares the learned score with the exact one.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import probpath
from probpath.paths.field import PathField
from probpath.paths.oracle import GaussianMixtureOracle
from probpath.sampling import SAMPLERS
from probpath.score import NCSN, DiffusionModel, ScoreSDE

DT = torch.float64
WEIGHTS = torch.tensor([0.4, 0.6], dtype=DT)
MEANS = torch.tensor([[-1.0, 0.5], [1.0, -0.5]], dtype=DT)
COVS = torch.stack([torch.diag(torch.tensor([0.3, 0.2], dtype=DT)), 0.25 * torch.eye(2, dtype=DT)])


class OracleNet(nn.Module):
    """A 'network' returning the exact prediction of the mixture (plus a dummy parameter)."""

    def __init__(self, oracle, prediction):
        super().__init__()
        self.oracle, self.prediction = oracle, prediction
        self.dummy = nn.Parameter(torch.zeros((), dtype=DT))

    def forward(self, x, t, cond=None):
        return self.oracle.predict(x, t, as_=self.prediction) + 0 * self.dummy


def with_oracle(model):
    """Swap the model's network for the exact field of the mixture on the model's path."""
    oracle = GaussianMixtureOracle(WEIGHTS, MEANS, COVS, model.path)
    model.network = OracleNet(oracle, model.field.prediction)
    model.field = PathField(model.network, model.path, model.field.prediction)
    return model.to(DT), oracle


def mixture_sample(n, seed):
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=g)
    z = torch.randn(n, 2, generator=g, dtype=DT)
    return MEANS[k] + torch.einsum("nij,nj->ni", torch.linalg.cholesky(COVS)[k], z)


MODELS = {
    "ddpm": lambda: DiffusionModel((2,), network={"hidden": [8]}),
    "ddpm-x0": lambda: DiffusionModel((2,), network={"hidden": [8]}, prediction="x0"),
    # VE: sigma_max >> data scale, so that the prior N(0, sigma_max^2) is exact to ~1e-4 nats
    # (at sigma_max = 50 the prior mismatch alone is 2e-3 nats)
    "ncsn": lambda: NCSN((2,), network={"hidden": [8]}, sigma_max=200.0),
    "sde-vp": lambda: ScoreSDE((2,), network={"hidden": [8]}),
    "sde-ve": lambda: ScoreSDE(
        (2,), sde="ve", schedule={"sigma_max": 200.0}, network={"hidden": [8]}
    ),
    "sde-subvp": lambda: ScoreSDE((2,), sde="subvp", network={"hidden": [8]}),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_log_prob_of_exact_field_is_closed_form(name):
    model, oracle = with_oracle(MODELS[name]())
    x = mixture_sample(6, seed=0)
    lp = model.log_prob(x)
    t0 = model.path.t_min
    expect = oracle.log_prob(x, t0)
    assert (lp - expect).abs().max() < 1e-3 * 2, (lp - expect).abs().max()  # 1e-3 nats/dim
    assert model.likelihood_nfe > 0
    bpd = model.bits_per_dim(x)
    torch.testing.assert_close(bpd, -lp / (2 * math.log(2)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("ddpm", {}),  # ancestral, sigma_t^2 = beta_tilde_t, 1000 steps
        ("ddpm", {"variance": "beta"}),  # ancestral, sigma_t^2 = beta_t
        ("ddpm", {"sampler": "dpmpp_2m", "steps": 20}),
        ("sde-vp", {}),  # reverse-SDE Euler-Maruyama, 1000 steps
        ("ncsn", {"sampler_options": {"n_steps": 30, "step_size": 1e-4}}),  # annealed Langevin
    ],
)
def test_default_samplers_reproduce_mixture_moments(name, options):
    opts = dict(options)
    model = MODELS[name]()
    if "sampler_options" in opts:  # rebuild with other default sampler options
        model = NCSN((2,), network={"hidden": [8]}, sigma_max=5.0, **opts)  # data ~ 2 wide
        opts = {}
    model, _ = with_oracle(model)
    n = 4000
    x = model.sample(n, generator=torch.Generator().manual_seed(0), **opts)
    assert x.shape == (n, 2) and x.dtype == DT
    mean = (WEIGHTS[:, None] * MEANS).sum(0)
    second = (WEIGHTS[:, None, None] * (COVS + MEANS[:, :, None] * MEANS[:, None, :])).sum(0)
    cov = second - mean[:, None] * mean[None, :]
    # 4 standard errors: sqrt(var / n) for the mean, sqrt(2 / n) var for a (co)variance
    var = cov.diagonal().max()
    assert (x.mean(0) - mean).abs().max() < 4 * math.sqrt(var / n)
    assert (torch.cov(x.T) - cov).abs().max() < 4 * math.sqrt(2 / n) * var


def test_sampling_nfe_is_counted():
    model, _ = with_oracle(MODELS["ddpm"]())
    assert model.sampling_nfe is None
    model.sample(3, steps=7)
    assert model.sampling_nfe == 7  # ancestral: one evaluation per step
    model.sample(3, sampler="dpmpp_2m", steps=6)
    assert model.sampling_nfe == 6  # DPM-Solver++(2M): one evaluation per step
    model.sample(3, sampler="heun", steps=5)
    assert model.sampling_nfe == 2 * 4 + 1  # Heun, last step to sigma = 0 is first order


def test_ancestral_variance_follows_the_model():
    # one choice of sigma_t^2 for the bound and the sampler (diffusers' "fixed_small" default)
    assert MODELS["ddpm"]().sampler_options == {"variance": "beta_tilde", "grid": "uniform"}
    large = DiffusionModel((2,), network={"hidden": [8]}, variance="large")
    assert large.sampler_options["variance"] == "beta"


def test_ncsn_levels_are_geometric():
    model = NCSN((2,), sigma_min=0.01, sigma_max=10.0, num_scales=4, network={"hidden": [8]})
    torch.testing.assert_close(model.noise_levels(), torch.tensor([10.0, 1.0, 0.1, 0.01], dtype=DT))
    t = model.sample_t(1000)
    assert set((t * 3).round().long().tolist()) == {0, 1, 2, 3}


def test_diffusion_vlb_and_objectives():
    torch.manual_seed(0)
    x = mixture_sample(16, seed=1).float()
    m = DiffusionModel((2,), num_steps=20, network={"hidden": [8]})
    terms = m.vlb(x[:4])
    assert terms.total.shape == (4,) and torch.isfinite(terms.total).all()
    m_vlb = DiffusionModel((2,), num_steps=20, objective="vlb", network={"hidden": [8]})
    loss = m_vlb.loss(x)
    assert loss.shape == (16,) and torch.isfinite(loss).all()


def test_score_sde_likelihood_weighting_runs():
    m = ScoreSDE((2,), weighting="likelihood", network={"hidden": [8]})
    loss = m.loss(torch.randn(32, 2))
    assert loss.shape == (32,) and (loss >= 0).all()


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (DiffusionModel, {"objective": "nope"}, "objective"),
        (DiffusionModel, {"sampler": "nope"}, "sampler"),
        (DiffusionModel, {"prediction": "nope"}, "prediction"),
        (ScoreSDE, {"sde": "nope"}, "sde"),
        (ScoreSDE, {"weighting": "nope"}, "weighting"),
        (NCSN, {"num_scales": 1}, "num_scales"),
    ],
)
def test_constructor_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls((2,), network={"hidden": [8]}, **kwargs)


def test_image_model_round_trip(tmp_path):
    m = DiffusionModel((1, 8, 8), network={"base_channels": 4, "channel_mult": [1]})
    x = torch.rand(3, 1, 8, 8)
    assert m.loss(x).shape == (3,)
    m.save(tmp_path / "m")
    loaded = probpath.load(tmp_path / "m")
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a, b = m.sample(2, steps=2, generator=g()), loaded.sample(2, steps=2, generator=g())
    torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_ddpm_learns_gaussian_score():
    """Trained on N(mu, 0.25 I), the eps-network's score at t = 0.3 matches the exact one."""
    torch.manual_seed(0)
    mu = torch.tensor([1.0, -1.0])
    model = DiffusionModel((2,), network={"hidden": [64, 64]})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(600):
        x = torch.randn(256, 2, generator=g) * 0.5 + mu
        loss = model.loss(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    t = 0.3
    v = model.path(torch.tensor(t))
    x = v.alpha * mu + torch.randn(500, 2, generator=g) * torch.sqrt(v.alpha**2 * 0.25 + v.sigma**2)
    exact = -(x - v.alpha * mu) / (v.alpha**2 * 0.25 + v.sigma**2)
    with torch.no_grad():
        learned = model.score(x, t)
    rel = (learned - exact).norm() / exact.norm()
    assert rel < 0.1, f"relative score error {rel:.3f}"


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("name", ["ddpm", "sde-ve"])
def test_every_shared_sampler_runs(name, sampler):
    """Any sampler works for any score model (one path, one set of samplers)."""
    model, _ = with_oracle(MODELS[name]())
    opts = {"n_steps": 5} if "langevin" in sampler else {}
    x = model.sample(
        4, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(0), **opts
    )
    assert x.shape == (4, 2) and torch.isfinite(x).all()
