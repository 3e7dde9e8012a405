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


def _truncation_bound(path, oracle, r):
    """Bound on ``|log pi(z) - log p_1(z)|`` for ``|z| <= r``, ``pi = N(0, s^2 I)`` the prior.

    ``p_1 = sum_k w_k N(m_k, C_k)`` with ``m_k = alpha_1 mu_k``, ``C_k = alpha_1^2 Sigma_k +
    sigma_1^2 I``. As ``min_k log N_k <= log p_1 <= max_k log N_k``, the gap is at most
    ``max_k |log pi - log N_k|``, and ``log pi(z) - log N_k(z) = z^T (C_k^{-1} - I / s^2) z / 2
    - m_k^T C_k^{-1} z + m_k^T C_k^{-1} m_k / 2 + (log det C_k - d log s^2) / 2``; bound each
    term by the triangle and Cauchy-Schwarz inequalities at ``|z| = r``.
    """
    v = path(torch.tensor(path.t_max, dtype=DT))
    s2 = path.schedule.prior_std**2
    eye = torch.eye(oracle.means.shape[1], dtype=DT)
    bounds = []
    for mu, cov in zip(oracle.means, oracle.covs):
        C = v.alpha**2 * cov + v.sigma**2 * eye
        Ci, m = torch.linalg.inv(C), v.alpha * mu
        quad = 0.5 * r**2 * torch.linalg.matrix_norm(Ci - eye / s2, ord=2)
        lin = r * (Ci @ m).norm() + 0.5 * m @ Ci @ m
        logdet = 0.5 * (torch.logdet(C) - len(eye) * math.log(s2)).abs()
        bounds.append(quad + lin + logdet)
    return torch.stack(bounds).max()


SHIFT = torch.tensor([3.0, -2.0], dtype=DT)  # an off-centre mixture: mean about (3.2, -2.1)


@pytest.mark.parametrize("name", list(MODELS))
def test_log_prob_of_exact_field_is_closed_form(name):
    """``log_prob`` of the exact field vs the oracle's ``log p_{t_min}(x)``, error split into
    its two parts on an off-centre mixture.

    1. Prior truncation: the ODE carries ``x`` to ``z = x_1``, whose exact density is the
       mixture convolved along the path, ``p_1``; the model uses ``pi = N(0, s^2 I)``, so it
       adds ``T(z) = log pi(z) - log p_1(z)`` exactly. First order in ``alpha_1 |mu|``
       (VP: alpha_1 ~ 6.5e-3) or ``|mu| / sigma_max`` (VE) it is ``-m^T C^{-1} z``, about
       1e-2 nats here (2e-3 for the centred mixture); bounded by :func:`_truncation_bound`.
    2. Solver error: re-run with the exact ``p_1`` as the prior (which also records ``z``).
       dopri5 keeps each accepted step's local error, in the RMS norm over the batch, below
       ``atol + rtol |y|`` (probpath's defaults 1e-5 and 1e-5); so one element's local error is
       below ``sqrt(B)`` times that, and without amplification the global error is below
       ``(NFE / 6) sqrt(B) (atol + rtol max|Delta|)``, ``Delta`` the integrated log-density
       change (six evaluations per dopri5 step). Measured: 2e-5 to 6e-5 nats.
    Both runs take the same ODE path, so their difference must be ``T(z)`` to round-off.
    """
    model = MODELS[name]()
    oracle = GaussianMixtureOracle(WEIGHTS, MEANS + SHIFT, COVS, model.path)
    model.network = OracleNet(oracle, model.field.prediction)
    model.field = PathField(model.network, model.path, model.field.prediction)
    model = model.to(DT)
    x = mixture_sample(6, seed=0) + SHIFT
    exact = oracle.log_prob(x, model.path.t_min)
    lp = model.log_prob(x)
    assert model.likelihood_nfe > 0

    t1, ends = model.path.t_max, []

    def exact_prior(z):
        ends.append(z)
        return oracle.log_prob(z, t1)

    default_prior = model.path.prior_log_prob
    model.path.prior_log_prob = exact_prior  # this instance only: the exact terminal density
    lp_exact_prior = model.log_prob(x)
    nfe, z = model.likelihood_nfe, ends[-1]
    delta = lp_exact_prior - oracle.log_prob(z, t1)
    solver_tol = nfe / 6 * math.sqrt(len(x)) * (1e-5 + 1e-5 * delta.abs().max())
    assert (lp_exact_prior - exact).abs().max() <= solver_tol

    trunc = default_prior(z) - oracle.log_prob(z, t1)
    torch.testing.assert_close(lp - lp_exact_prior, trunc, rtol=0, atol=1e-9)
    bound = _truncation_bound(model.path, oracle, z.norm(dim=1).max())
    assert trunc.abs().max() <= bound
    assert (lp - exact).abs().max() <= solver_tol + bound

    bpd = model.bits_per_dim(x)  # bits/dim = -log p / (d ln 2), d = 2
    torch.testing.assert_close(bpd, -lp_exact_prior / (2 * math.log(2)), rtol=1e-12, atol=0)


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


# One Gaussian N(M1, diag(S1^2)) as the data: its exact x0_hat is affine in x_t, so every
# expectation below is closed form. Per coordinate, on a VP path (alpha_t, sigma_t),
#   x0_hat(x_t) = m + k_t (x_t - alpha_t m),   k_t = alpha_t s^2 / (alpha_t^2 s^2 + sigma_t^2),
# and with x_t = alpha_t x0 + sigma_t eps the error x0 - x0_hat = (1 - k_t alpha_t)(x0 - m)
# - k_t sigma_t eps has E||x0 - x0_hat||^2 = sum_j (1 - k alpha)^2 (x0_j - m_j)^2 + k^2 sigma^2.
M1 = torch.tensor([0.7, -1.2], dtype=DT)
S1 = torch.tensor([0.5, 0.9], dtype=DT)


def with_gaussian_oracle(model):
    oracle = GaussianMixtureOracle(torch.ones(1, dtype=DT), M1[None], S1[None] ** 2, model.path)
    model.network = OracleNet(oracle, model.field.prediction)
    model.field = PathField(model.network, model.path, model.field.prediction)
    return model.to(DT)


def _x0_error_sq(x0, alpha, sigma):
    """E||x0 - x0_hat(x_t)||^2 over eps, per row of ``x0`` (formula above)."""
    k = alpha * S1**2 / (alpha**2 * S1**2 + sigma**2)
    return ((1 - k * alpha) ** 2 * (x0 - M1) ** 2 + k**2 * sigma**2).sum(-1)


def _ddpm_vlb_closed_form(x0, n, variance):
    """E[L_T + sum_{i>1} L_{i-1} + L_0] of Eq. (38) for the exact field, from Ho et al.'s
    definitions alone: beta_i = linspace(1e-4, 0.02, N), abar_i = prod_{j<=i} (1 - beta_j);
    posterior q(x_{i-1}|x_i, x0) = N(c_i x_i + sqrt(abar_{i-1}) beta_i / (1 - abar_i) x0,
    beta~_i), beta~_i = (1 - abar_{i-1}) beta_i / (1 - abar_i); model step N(same mean with
    x0_hat, s_i^2), s_i^2 = beta~_i ("small") or beta_i ("large"), so
    L_{i-1} = 1/2 [d (log(s_i^2 / beta~_i) + beta~_i / s_i^2 - 1)
    + (sqrt(abar_{i-1}) beta_i / (1 - abar_i))^2 E||x0 - x0_hat||^2 / s_i^2];
    L_0 = -E log N(x0; x0_hat(x_1), (1 - abar_1) / abar_1) (the decoder documented in
    ``ddpm_vlb_terms``); L_T = KL(N(sqrt(abar_N) x0, 1 - abar_N) || N(0, (1 - abar_N) I))
    = abar_N ||x0||^2 / (2 (1 - abar_N)), the model's prior being N(0, sigma_1^2 I)
    (``Schedule.prior_std``; Ho et al.'s N(0, I) when abar_N ~ 0, as for N = 1000)."""
    beta = torch.linspace(1e-4, 0.02, n, dtype=DT)
    abar = torch.cumprod(1 - beta, 0)
    d = x0.shape[-1]
    prior = abar[-1] * (x0**2).sum(-1) / (2 * (1 - abar[-1]))
    v0 = (1 - abar[0]) / abar[0]
    err = _x0_error_sq(x0, abar[0].sqrt(), (1 - abar[0]).sqrt())
    decoder = 0.5 * (err / v0 + d * torch.log(2 * math.pi * v0))
    diffusion = torch.zeros_like(prior)
    for i in range(1, n):  # step i + 1 in 1-based numbering
        b, ab, ab_prev = beta[i], abar[i], abar[i - 1]
        tilde = (1 - ab_prev) * b / (1 - ab)
        s2 = tilde if variance == "small" else b
        c0 = ab_prev.sqrt() * b / (1 - ab)
        err = _x0_error_sq(x0, ab.sqrt(), (1 - ab).sqrt())
        diffusion = diffusion + 0.5 * (
            d * (torch.log(s2 / tilde) + tilde / s2 - 1) + c0**2 * err / s2
        )
    return {"prior": prior, "diffusion": diffusion, "decoder": decoder}


@pytest.mark.parametrize("variance", ["small", "large"])
def test_diffusion_vlb_of_exact_field_is_closed_form(variance):
    """``DiffusionModel.vlb`` (all N steps) and the ``objective="vlb"`` loss (the one-step
    unbiased estimate ``(L_T + N L_{i-1}) / d``) of the exact Gaussian field have the
    closed-form expectation above. The prior term is deterministic (float64 round-off); the
    decoder and diffusion terms and the one-step loss are averaged over R independent draws
    per point and must agree within 5 Monte-Carlo standard errors."""
    n, R = 20, 1000
    x0 = torch.tensor([[0.2, -0.5], [1.5, -2.0], [-0.4, 0.3]], dtype=DT)
    closed = _ddpm_vlb_closed_form(x0, n, variance)
    expected = sum(closed.values())
    model = with_gaussian_oracle(
        DiffusionModel((2,), num_steps=n, variance=variance, network={"hidden": [8]})
    )
    terms = model.vlb(x0.repeat(R, 1), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(terms.prior[: len(x0)], closed["prior"], rtol=1e-12, atol=0)
    for name in ("decoder", "diffusion"):
        reps = getattr(terms, name).reshape(R, len(x0))
        est, se = reps.mean(0), reps.std(0) / math.sqrt(R)
        assert ((est - closed[name]).abs() <= 5 * se).all(), (name, (est - closed[name]) / se)

    model_vlb = with_gaussian_oracle(
        DiffusionModel(
            (2,), num_steps=n, variance=variance, objective="vlb", network={"hidden": [8]}
        )
    )
    torch.manual_seed(2)
    with torch.no_grad():
        reps = model_vlb.loss(x0.repeat(20 * R, 1)).reshape(20 * R, len(x0))
    est, se = reps.mean(0), reps.std(0) / math.sqrt(20 * R)
    assert ((est - expected / 2).abs() <= 5 * se).all(), (est - expected / 2) / se


@pytest.mark.parametrize("weighting", ["likelihood", "score", "uniform"])
@pytest.mark.parametrize("t", [0.01, 0.3, 0.9])
def test_score_sde_weighted_loss_of_exact_field_is_closed_form(weighting, t):
    """ScoreSDE's loss at a fixed time is ``w(t) mean_j (eps_hat_j - eps_j)^2`` with
    ``w = g^2 / sigma^2`` (likelihood weighting, lambda = g^2), 1 (lambda = sigma^2) or
    ``1 / sigma^2`` (lambda = 1). For the VP SDE, ``g(t)^2 = beta(t) = b_min + t (b_max -
    b_min)`` and ``sigma_t^2 = 1 - exp(-(b_min t + (b_max - b_min) t^2 / 2))`` (Song et al.
    2021, Eq. 32-33 of their appendix). With the exact field of the Gaussian above,
    ``eps_hat - eps = sigma alpha (x0 - m) / tau - (alpha^2 s^2 / tau) eps`` with
    ``tau = alpha^2 s^2 + sigma^2``, so ``E (eps_hat - eps)^2 = sigma^2 alpha^2 (x0 - m)^2 /
    tau^2 + (alpha^2 s^2 / tau)^2`` per coordinate. Mean of R draws within 5 standard errors."""
    model = with_gaussian_oracle(ScoreSDE((2,), weighting=weighting, network={"hidden": [8]}))
    model.sample_t = lambda n: torch.full((n,), t, dtype=DT)  # pin the training time
    b_min, b_max = 0.1, 20.0
    g2 = b_min + t * (b_max - b_min)
    alpha2 = math.exp(-(b_min * t + 0.5 * (b_max - b_min) * t**2))
    sigma2 = 1 - alpha2
    w = {"likelihood": g2 / sigma2, "score": 1.0, "uniform": 1 / sigma2}[weighting]
    x0 = torch.tensor([[0.2, -0.5], [1.5, -2.0]], dtype=DT)
    tau = alpha2 * S1**2 + sigma2
    per_dim = sigma2 * alpha2 * (x0 - M1) ** 2 / tau**2 + (alpha2 * S1**2 / tau) ** 2
    expected = w * per_dim.mean(-1)
    R = 4000
    torch.manual_seed(0)
    with torch.no_grad():
        reps = model.loss(x0.repeat(R, 1)).reshape(R, len(x0))
    est, se = reps.mean(0), reps.std(0) / math.sqrt(R)
    assert ((est - expected).abs() <= 5 * se).all(), (est - expected) / se


def test_score_sde_training_time_is_uniform_on_t_min_to_1():
    """Eq. (44) draws t ~ U[t_min, 1]: mean (1 + t_min) / 2 and variance (1 - t_min)^2 / 12,
    each within 5 standard errors (s.e. of the mean sqrt(var / n); of the variance
    sqrt((m4 - var^2) / n) with m4 = (1 - t_min)^4 / 80 for a uniform law)."""
    model = ScoreSDE((2,), network={"hidden": [8]}).to(DT)
    t_min, n = model.path.t_min, 100_000
    torch.manual_seed(0)
    t = model.sample_t(n)
    assert t.min() >= t_min and t.max() <= 1.0
    width = 1 - t_min
    var = width**2 / 12
    assert abs(t.mean() - (1 + t_min) / 2) < 5 * math.sqrt(var / n)
    assert abs(t.var() - var) < 5 * math.sqrt((width**4 / 80 - var**2) / n)


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
