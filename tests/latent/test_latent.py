"""Latent diffusion / latent flow matching (``probpath.latent``).

The exact pieces use a *linear-Gaussian* latent model whose ``log p(x)`` is closed form:

* the scaled latent ``z' = s z`` has the prior ``N(m, diag(S))``, realised by replacing the
  path model's field with the oracle (an exact field) (``paths/oracle.py``), so the path
  model's ODE log-density is ``log N(z'; m, diag S)`` up to the solver's error;
* the decoder is linear with fixed noise: ``x | z ~ N(W z + c, sigma^2 I)``;

hence ``z ~ N(m / s, diag(S) / s^2)`` and ``x ~ N(W m / s + c, W diag(S) W^T / s^2 + sigma^2
I)``. With ``W``'s columns orthogonal the posterior ``p(z | x)`` is Gaussian with the diagonal
precision ``P = s^2 diag(1 / S) + W^T W / sigma^2`` and mean ``P^-1 (s m / S + W^T (x - c) /
sigma^2)``: a linear encoder with a constant log-variance represents it exactly.
"""

from __future__ import annotations

import math

import pytest
import torch

import probpath
from probpath.core.model import is_conditional
from probpath.latent import LatentDiffusion, LatentFlowMatching
from probpath.paths.oracle import GaussianMixtureOracle
from probpath.training import TrainConfig, Trainer, load_checkpoint

DT = torch.float64
D, d = 3, 2
SCALE = 2.0
SIGMA = 0.5  # decoder noise
M = torch.tensor([0.7, -0.4], dtype=DT)  # prior mean of z' = s z
S = torch.tensor([0.6, 1.5], dtype=DT)  # prior variances of z'
W = torch.tensor([[1.2, 0.0], [0.0, -0.8], [0.0, 0.0]], dtype=DT)  # orthogonal columns
C = torch.tensor([0.1, 0.2, -0.3], dtype=DT)


def posterior_precision() -> torch.Tensor:
    return SCALE**2 / S + (W * W).sum(0) / SIGMA**2  # diagonal of P


def linear_gaussian_model(encoder_shift: float = 0.0, encoder_log_var_shift: float = 0.0):
    """The linear-Gaussian latent model; the encoder is the exact posterior, optionally
    distorted (its mean shifted by ``encoder_shift``, its log-variance by the other)."""
    model = LatentFlowMatching(
        (D,),
        latent_dim=d,
        autoencoder={"hidden": [], "decoder_std": SIGMA},
        prior_options={"network": {"hidden": [4]}},
    ).to(DT)
    oracle = GaussianMixtureOracle([1.0], M[None], S[None], model.prior.path)
    model.prior.field = oracle  # the oracle is a Field on the prior's path: its exact flow
    p = posterior_precision()
    enc = model.autoencoder.encoder[1][0]  # Linear(D, 2d): [mu, log_var]
    dec = model.autoencoder.decoder[0][0]  # Linear(d, D)
    with torch.no_grad():
        enc.weight.zero_()
        enc.weight[:d] = (W / SIGMA**2).T / p[:, None]
        enc.bias[:d] = (SCALE * M / S - W.T @ C / SIGMA**2) / p + encoder_shift
        enc.bias[d:] = -torch.log(p) + encoder_log_var_shift
        dec.weight.copy_(W)
        dec.bias.copy_(C)
        model.scale.fill_(SCALE)
    model.start_latent_stage()
    return model.eval(), oracle


def exact_log_px(x: torch.Tensor) -> torch.Tensor:
    cov = W @ torch.diag(S) @ W.T / SCALE**2 + SIGMA**2 * torch.eye(D, dtype=DT)
    mean = W @ M / SCALE + C
    return torch.distributions.MultivariateNormal(mean, cov).log_prob(x)


def data(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g, dtype=DT) * 1.3 + 0.2


def solver_tolerance(model, lp, record) -> float:
    """dopri5's global error bound for the prior's ODE log-density (the derivation of
    ``tests/score/test_models.py``): each accepted step keeps the RMS local error over the
    batch below ``atol + rtol |y|`` (1e-5, 1e-5), so ``(NFE / 6) sqrt(B) (atol + rtol
    max|Delta|)`` bounds the error without amplification, ``Delta`` the integrated change
    ``log p_0(z') - log p_1(z'_1)`` and six evaluations per step."""
    delta = (lp - model.prior.path.prior_log_prob(record[-1])).abs().max()
    return model.prior.likelihood_nfe / 6 * math.sqrt(len(lp)) * (1e-5 + 1e-5 * float(delta))


def _record_prior_end(model) -> list:
    """Record the ODE's end point ``z'_1`` (same values: the linear path's prior is exact)."""
    ends, default = [], model.prior.path.prior_log_prob

    def recorder(z):
        ends.append(z)
        return default(z)

    model.prior.path.prior_log_prob = recorder  # this instance only
    return ends


def test_bound_terms_with_the_exact_posterior_give_log_px():
    """With the exact posterior as encoder each importance weight ``log p(x|z) + log p_Z(z)
    - log q(z|x)`` equals ``log p(x)``; the bound's terms are checked through it: with ``z``
    redrawn from the same seed, ``reconstruction + prior + log_scale - log q(z|x)`` must be
    the closed-form ``log p(x)`` to the ODE solver's tolerance (the other terms are closed
    form, round-off ~1e-13), and the entropy term is the diagonal Gaussian's ``sum_j (log(2
    pi e) + log var_j) / 2``, ``var_j = 1 / P_j``."""
    model, oracle = linear_gaussian_model()
    ends = _record_prior_end(model)
    x = data(16, seed=0)
    b = model.bound(x, generator=torch.Generator().manual_seed(7))
    p = posterior_precision()
    # the same draw as inside bound(): z = mu + sigma_q * eps, eps from the seeded generator
    eps = torch.randn(len(x), d, generator=torch.Generator().manual_seed(7), dtype=DT)
    mu = model.autoencoder.encode(x)[0]
    z = mu + eps / p.sqrt()
    log_q = torch.distributions.Normal(mu, 1 / p.sqrt()).log_prob(z).sum(-1)
    exact_prior = oracle.log_prob(SCALE * z, 0.0)
    tol = solver_tolerance(model, b.prior, ends)
    assert (b.prior - exact_prior).abs().max() <= tol
    assert (b.log_scale - d * math.log(SCALE)).abs().max() <= 1e-13
    weights = b.reconstruction + b.prior + b.log_scale - log_q
    assert (weights - exact_log_px(x)).abs().max() <= tol + 1e-10
    entropy = 0.5 * (math.log(2 * math.pi) + 1 - torch.log(p)).sum()
    torch.testing.assert_close(b.entropy, entropy.expand(len(x)), rtol=1e-13, atol=0)
    torch.testing.assert_close(
        b.elbo, model.log_prob(x, generator=torch.Generator().manual_seed(7))
    )


def test_bound_is_below_log_px_by_the_posterior_kl():
    """With a distorted encoder ``q`` the bound's expectation is ``log p(x) - KL(q || p(z|x))``
    (both Gaussian: closed form). One ``x`` repeated 4000 times gives 4000 independent
    one-draw bounds; their mean must match within 5 standard errors plus the solver
    tolerance, and lie below ``log p(x)`` (the gap here is ~0.6 nats, > 20 s.e.)."""
    shift, log_var_shift = 0.3, 0.8
    model, _ = linear_gaussian_model(shift, log_var_shift)
    ends = _record_prior_end(model)
    x = data(1, seed=1).expand(4000, D)
    b = model.bound(x, generator=torch.Generator().manual_seed(3))
    p = posterior_precision()
    var_q, var_p = torch.exp(-torch.log(p) + log_var_shift), 1 / p
    kl = 0.5 * (var_q / var_p + shift**2 / var_p - 1 + torch.log(var_p / var_q)).sum()
    expected = exact_log_px(x[:1])[0] - kl
    se = float(b.elbo.std() / math.sqrt(len(x)))
    tol = solver_tolerance(model, b.prior, ends)
    assert abs(float(b.elbo.mean() - expected)) <= 5 * se + tol
    assert float(b.elbo.mean()) < float(exact_log_px(x[:1])[0]) - 5 * se


def test_decoded_samples_have_the_closed_form_moments():
    """Samples decode ``z' / s`` (decoder mean, the default) from the exact prior flow: mean
    ``W m / s + c``, covariance ``W diag(S) W^T / s^2``; with ``noise=True`` the decoder's
    ``sigma^2 I`` is added. 20000 draws through the adaptive ODE solve (its error ~1e-5 is
    far below the Monte Carlo error): means within 5 s.e. ``sqrt(var / n)``, covariances
    within 5 s.e. ``sqrt((V_ii V_jj + V_ij^2) / n)`` (Gaussian samples)."""
    model, _ = linear_gaussian_model()
    n = 20_000
    mean = W @ M / SCALE + C
    for noise, cov in (
        (False, W @ torch.diag(S) @ W.T / SCALE**2),
        (True, W @ torch.diag(S) @ W.T / SCALE**2 + SIGMA**2 * torch.eye(D, dtype=DT)),
    ):
        x = model.sample(n, generator=torch.Generator().manual_seed(11), noise=noise,
                         sampler="adaptive")  # fmt: skip
        assert x.shape == (n, D)
        se_mean = (cov.diagonal() / n).sqrt()
        assert ((x.mean(0) - mean).abs() <= 5 * se_mean + 1e-12).all()
        v = cov.diagonal()
        se_cov = ((v[:, None] * v[None, :] + cov**2) / n).sqrt()
        assert ((torch.cov(x.T) - cov).abs() <= 5 * se_cov + 1e-12).all()


# -- training: stages, scale, resume, conditioning, determinism -----------------------------


def _images(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1


def _tiny(cls=LatentDiffusion, **kw):
    opts = {
        "latent_dim": 2,
        "autoencoder": {"channels": [4, 8]},
        "prior_options": {"network": {"hidden": [8]}, "steps": 2, "likelihood_steps": 4},
        "autoencoder_share": 0.5,
        **kw,
    }
    return cls((1, 8, 8), **opts)


def _config(out=None, steps=8, **kw):
    return TrainConfig(steps=steps, batch_size=48, lr=1e-2, warmup_steps=0, ema_decay=None,
                       log_every=1, out_dir=None if out is None else str(out), progress="off",
                       dequantize=False, **kw)  # fmt: skip


def test_trainer_switches_stage_at_the_budget_share_and_freezes_the_autoencoder():
    """Steps 0-3 (budget used 0/8..3/8 < 0.5) train the autoencoder (and warm the prior);
    from step 4 only the path model moves; the scale is the LDM estimate ``1 / std(z)`` of
    the last stage-0 batch (the whole data set here) and stays fixed afterwards."""
    x = _images()
    snap = {}

    class Spy(LatentDiffusion):
        def train_step(self, x, cond, step, update):
            out = super().train_step(x, cond, step, update)
            snap[step] = ({k: v.clone() for k, v in self.autoencoder.state_dict().items()},
                          float(self.scale))  # fmt: skip
            return out

    torch.manual_seed(0)
    res = Trainer(_config()).fit(_tiny(Spy), x)
    assert [r["stage"] for r in res.history] == [0, 0, 0, 0, 1, 1, 1, 1]
    for step in (5, 6, 7):
        assert snap[step][1] == snap[3][1]
        for k, v in snap[3][0].items():
            if k != "num_steps":
                assert torch.equal(snap[step][0][k], v), k
    first = next(k for k in snap[3][0] if k.endswith("weight"))
    assert not torch.equal(snap[2][0][first], snap[3][0][first])  # stage 0 trains it
    # 1 / scale is the std of the last autoencoder's latents of the data; redrawn latents
    # differ only by the posterior noise: the std of a std estimate over N = 96 values is
    # std / sqrt(2 N); two such estimates: allow 5 * sqrt(2) of it
    with torch.no_grad():
        z, _, _ = res.model.encode(x)
    sd = float(z.std())
    assert abs(1 / snap[3][1] - sd) <= 5 * math.sqrt(2) * sd / math.sqrt(2 * z.numel())


def test_killed_in_the_latent_stage_and_resumed_is_bit_identical(tmp_path):
    """A run checkpointed in stage 0 (after 4 steps), killed in stage 1 (step 6) and resumed ends
    with exactly the weights, scale and stage of an uninterrupted run."""

    class Crashing(LatentDiffusion):
        fail_at = None

        def train_step(self, x, cond, step, update):
            if step == self.fail_at:
                raise KeyboardInterrupt
            return super().train_step(x, cond, step, update)

    x = _images()
    torch.manual_seed(0)
    full = Trainer(_config(tmp_path / "full")).fit(_tiny(Crashing), x)
    crashed = _tiny(Crashing)
    crashed.fail_at = 6
    with pytest.raises(KeyboardInterrupt):
        Trainer(_config(tmp_path / "run", ckpt_every=4, ckpt_seconds=None)).fit(crashed, x)
    assert load_checkpoint(tmp_path / "run").meta["step"] == 4
    torch.manual_seed(99)
    resumed = Trainer(_config(tmp_path / "run", ckpt_every=4, ckpt_seconds=None)).fit(
        _tiny(Crashing), x, resume=tmp_path / "run"
    )
    assert int(resumed.model.stage) == 1
    for (k, v), w in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v, w), k
    plain = _tiny()  # saved as the catalog's class: stage and scale survive save / load
    plain.load_state_dict(resumed.model.state_dict())
    plain.catalog_name = "ldm"
    loaded = probpath.load(plain.save(tmp_path / "saved"))
    assert float(loaded.scale) == float(full.model.scale) and int(loaded.stage) == 1


def test_labels_reach_the_latent_path_model():
    """Built with ``num_classes`` the model is conditional: the Trainer passes labels, the
    prior's class embedding learns, and ``sample(cond=...)`` depends on the label (the same
    noise with labels 0 and 2 gives different images); an unconditional model refuses
    labels with a message naming the fix."""
    x, y = _images(), torch.arange(48) % 3
    torch.manual_seed(0)
    model = _tiny(LatentFlowMatching, num_classes=3)
    assert is_conditional(model)
    emb0 = model.prior.network.class_embed.weight.clone()
    res = Trainer(_config(steps=4)).fit(model, probpath.Dataset(x=x, y=y, num_classes=3))
    assert not torch.equal(emb0, res.model.prior.network.class_embed.weight)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    a = res.model.sample(4, cond=torch.zeros(4, dtype=torch.long), generator=g())
    b = res.model.sample(4, cond=torch.full((4,), 2), generator=g())
    assert a.shape == (4, 1, 8, 8) and not torch.equal(a, b)
    with pytest.raises(ValueError, match="num_classes"):
        _tiny().sample(2, cond=torch.zeros(2, dtype=torch.long))


def test_same_seed_same_weights_and_samples():
    x = _images()
    runs = [Trainer(_config(steps=6, seed=4)).fit(_tiny(), x).model for _ in range(2)]
    for (k, v), w in zip(runs[0].state_dict().items(), runs[1].state_dict().values()):
        assert torch.equal(v, w), k
    s = [m.sample(3, generator=torch.Generator().manual_seed(2)) for m in runs]
    assert torch.equal(s[0], s[1])
    lp = [m.log_prob(x[:4]) for m in runs]  # the bound's default generator is seeded
    assert torch.equal(lp[0], lp[1])


def test_shapes_and_terms():
    model = _tiny().eval()
    x = _images(5)
    b = model.bound(x, n_samples=2)
    for term in (b.reconstruction, b.prior, b.log_scale, b.entropy, b.elbo):
        assert term.shape == (5,) and torch.isfinite(term).all()
    z, mu, log_var = model.encode(x)
    assert z.shape == mu.shape == log_var.shape == (5, 2)
    assert model.decode(z).shape == (5, 1, 8, 8)
    assert model.loss(x).shape == (5,)
    assert float(model.scale) == 1.0  # evaluating the loss (eval mode) leaves the scale alone
    assert model.sample(3).shape == (3, 1, 8, 8) and model.sampling_nfe == 2


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"autoencoder_share": 0.0}, "autoencoder_share"),
        ({"autoencoder_share": 1.0}, "autoencoder_share"),
        ({"prior": "flow-matching"}, "prior must be one of"),
        ({"autoencoder": {"beta": 2.0}}, "kl_weight"),
        ({"latent_dim": 0}, "latent_dim"),
    ],
)
def test_bad_options_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        _tiny(**kw)
