"""VAE against probabilistic PCA, where every quantity has a closed form (survey §1.2, Eq. 16).

The linear-Gaussian model ``x = W z + mu + sigma * eps``, ``z ~ N(0, I)``, has
``p(x) = N(mu, W W^T + sigma^2 I)`` and the posterior
``p(z|x) = N(M^{-1} W^T (x - mu), sigma^2 M^{-1})`` with ``M = W^T W + sigma^2 I``. When
``W`` has orthogonal columns, ``M`` is diagonal, so a linear encoder with a diagonal
Gaussian can represent the exact posterior; Eq. (16) then says
``ELBO = log p(x) - KL(q(z|x) || p(z|x))`` for any encoder, with equality at the exact one.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from probpath.likelihood.vae import VAE, BetaVAE
from probpath.likelihood.vae.common import ObservationModel, free_bits_kl, kl_weight

F64 = torch.float64
D, d, SIGMA = 5, 2, 0.5
S = torch.tensor([2.0, 1.2], dtype=F64)  # column norms of W


def _ppca(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=F64))[0]
    W = U * S  # orthogonal columns with norms S
    mu = torch.randn(D, generator=g, dtype=F64)
    return W, mu


def _linear_vae(W, mu, sigma=SIGMA, enc_shift=0.0, enc_var_scale=1.0, cls=VAE):
    """A VAE whose decoder is the PPCA model and whose encoder is (a distortion of) the
    exact posterior: mean M^{-1} W^T (x - mu) + shift, variance sigma^2 M^{-1} * scale."""
    torch.manual_seed(0)
    model = cls((D,), latent_dim=d, hidden=()).to(F64)
    dec, enc = model.decoder[0][0], model.encoder[1][0]
    m_diag = S.pow(2) + sigma**2
    A = W.T / m_diag[:, None]  # M^{-1} W^T
    with torch.no_grad():
        dec.weight.copy_(W)
        dec.bias.copy_(mu)
        model.observation.log_std.fill_(math.log(sigma))
        enc.weight.zero_()
        enc.weight[:d] = A
        enc.bias[:d] = -A @ mu + enc_shift
        enc.bias[d:] = torch.log(sigma**2 / m_diag * enc_var_scale)
    return model


def _exact_log_prob(W, mu, x, sigma=SIGMA):
    return MultivariateNormal(mu, W @ W.T + sigma**2 * torch.eye(D, dtype=F64)).log_prob(x)


def _true_posterior(W, mu, x, sigma=SIGMA):
    M = W.T @ W + sigma**2 * torch.eye(d, dtype=F64)
    mean = torch.linalg.solve(M, W.T @ (x - mu).T).T
    return MultivariateNormal(mean, sigma**2 * torch.linalg.inv(M))


def _data(W, mu, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=F64)
    return z @ W.T + mu + SIGMA * torch.randn(n, D, generator=g, dtype=F64)


def test_iwae_bound_is_exact_at_the_true_posterior():
    # q = p(z|x) makes every importance weight p(x, z) / q(z|x) equal to p(x).
    W, mu = _ppca()
    model = _linear_vae(W, mu)
    x = _data(W, mu, 20)
    exact = _exact_log_prob(W, mu, x)
    for k in (1, 7):
        bound = model.log_prob(x, k=k, generator=torch.Generator().manual_seed(k))
        torch.testing.assert_close(bound, exact, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shift, var_scale", [(0.0, 1.0), (0.3, 1.0), (0.0, 2.5), (-0.5, 0.4)])
def test_elbo_equals_log_likelihood_minus_posterior_kl(shift, var_scale):
    """Eq. (16): the model's ELBO estimate matches log p(x) - KL(q || p(z|x)) (closed form)
    within 5 Monte-Carlo standard errors, and never exceeds log p(x)."""
    W, mu = _ppca()
    model = _linear_vae(W, mu, enc_shift=shift, enc_var_scale=var_scale)
    x = _data(W, mu, 30)
    with torch.no_grad():
        mean, log_var = model.encode(x)
    q = MultivariateNormal(mean, torch.diag_embed(log_var.exp()))
    closed = _exact_log_prob(W, mu, x) - kl_divergence(q, _true_posterior(W, mu, x))
    R = 400  # independent one-sample estimates per point, in one batch
    with torch.no_grad():
        reps = model.elbo(x.repeat(R, 1), generator=torch.Generator().manual_seed(2))
    reps = reps.reshape(R, len(x))
    est, se = reps.mean(0), reps.std(0) / math.sqrt(len(reps))
    assert (est - closed).abs().max() <= (5 * se + 1e-9).max()
    exact = _exact_log_prob(W, mu, x)
    if shift == 0.0 and var_scale == 1.0:
        torch.testing.assert_close(closed, exact, rtol=0, atol=1e-10)
    else:
        assert (closed < exact).all()
        assert (est < exact + 5 * se).all()


def test_iwae_increases_with_k():
    """E[IWAE_k] is non-decreasing in k and stays below log p(x) (Burda et al., Thm 1).

    Each k gets R independent replicates of the bound summed over the batch; consecutive
    means must not decrease by more than 4 standard errors of their difference, the last must
    beat the first by more than 4 standard errors, and all stay below log p(x) + 4 s.e.
    """
    W, mu = _ppca()
    model = _linear_vae(W, mu, enc_shift=0.4, enc_var_scale=3.0)
    x = _data(W, mu, 10)
    R = 200
    xr = x.repeat(R, 1)
    exact = _exact_log_prob(W, mu, x).sum()
    means, ses = [], []
    with torch.no_grad():
        for k in (1, 4, 16, 64):
            lp = model.log_prob(xr, k=k, generator=torch.Generator().manual_seed(k))
            per_rep = lp.reshape(R, len(x)).sum(1)
            means.append(per_rep.mean())
            ses.append(per_rep.std() / math.sqrt(R))
    for i in range(len(means) - 1):
        tol = 4 * math.hypot(ses[i], ses[i + 1])
        assert means[i + 1] > means[i] - tol
    assert means[-1] - means[0] > 4 * math.hypot(ses[0], ses[-1])
    for m, se in zip(means, ses):
        assert m < exact + 4 * se


@pytest.mark.slow
def test_trained_linear_vae_reaches_the_ppca_maximum_likelihood():
    """With a fixed isotropic decoder std, the maximum of log p(x) over (W, mu) has the
    closed form W = U_d (Lambda_d - sigma^2 I)^{1/2} (Tipping & Bishop, 1999), mu = mean.
    A linear VAE trained on the ELBO approaches it (gap below 1% of the initial gap) and its
    ELBO never exceeds it (beyond 5 Monte-Carlo standard errors)."""
    W, mu = _ppca()
    x = _data(W, mu, 400, seed=3)
    xc = x - x.mean(0)
    lam, U = torch.linalg.eigh(xc.T @ xc / len(x))
    lam, U = lam.flip(0)[:d], U.flip(1)[:, :d]
    W_ml = U * (lam - SIGMA**2).sqrt()
    best = _exact_log_prob(W_ml, x.mean(0), x).mean()

    torch.manual_seed(0)
    model = VAE((D,), latent_dim=d, hidden=(), decoder_std=SIGMA).to(F64)
    g = torch.Generator().manual_seed(5)
    R = 50

    def elbo():  # R independent estimates of the mean ELBO over the data
        with torch.no_grad():
            return model.elbo(x.repeat(R, 1), generator=g).reshape(R, len(x)).mean(1)

    start = elbo().mean()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for step in range(300):
        if step == 200:
            opt.param_groups[0]["lr"] = 0.005
        opt.zero_grad()
        model.loss(x).mean().backward()
        opt.step()
    reps = elbo()
    final, se = reps.mean(), reps.std() / math.sqrt(R)
    assert final <= best + 5 * se
    assert best - final < 0.01 * (best - start)


def test_observation_models_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(6, 3, generator=g, dtype=F64)
    x = torch.randn(6, 3, generator=g, dtype=F64)
    gauss = ObservationModel((3,), "gaussian", decoder_std=0.7)
    ref = torch.distributions.Normal(out, 0.7).log_prob(x).sum(1)
    torch.testing.assert_close(gauss.log_prob(x, out), ref)
    # Bernoulli on data in {-1, 1}: the log-pmf of (x + 1) / 2
    bern = ObservationModel((3,), "bernoulli", data_range=(-1.0, 1.0))
    bits = torch.randint(0, 2, (6, 3), generator=g).to(F64)
    ref = torch.distributions.Bernoulli(logits=out).log_prob(bits).sum(1)
    torch.testing.assert_close(bern.log_prob(2 * bits - 1, out), ref)
    torch.testing.assert_close(bern.mean(out), 2 * torch.sigmoid(out) - 1)
    draws = bern.sample(out, generator=g)
    assert set(draws.unique().tolist()) <= {-1.0, 1.0}


def test_free_bits_and_warmup():
    g = torch.Generator().manual_seed(0)
    kl = torch.rand(8, 3, generator=g, dtype=F64) * torch.tensor([0.1, 1.0, 3.0], dtype=F64)
    kl.requires_grad_(True)
    lam = 0.5
    out = free_bits_kl(kl, lam)
    expected = torch.clamp(kl.detach().mean(0), min=lam).sum()
    torch.testing.assert_close(out.mean(), expected)
    out.sum().backward()
    active = kl.detach().mean(0) > lam
    assert torch.equal(kl.grad[:, ~active], torch.zeros_like(kl.grad[:, ~active]))
    assert torch.equal(kl.grad[:, active], torch.ones_like(kl.grad[:, active]))
    assert kl_weight(5, 2.0, 10) == 1.0 and kl_weight(20, 2.0, 10) == 2.0
    assert kl_weight(0, 2.0, 0) == 2.0

    model = VAE((2,), latent_dim=2, hidden=(8,), kl_warmup_steps=4).to(F64)
    x = torch.randn(5, 2, dtype=F64)
    weights = []
    for _ in range(6):
        weights.append(model.current_kl_weight())
        model.loss(x).mean().backward()
    assert weights == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    model.eval()
    with torch.no_grad():
        model.loss(x)
    assert int(model.num_steps) == 6  # evaluation does not advance warm-up


@pytest.mark.parametrize("cls, beta", [(VAE, 1.0), (BetaVAE, 4.0)])
def test_loss_is_negative_beta_elbo(cls, beta):
    """``E[loss(x)] = -(E_q[log p(x|z)] - beta KL(q(z|x) || N(0, I)))`` in closed form.

    For the PPCA decoder ``p(x|z) = N(W z + mu, sigma^2 I)`` and any diagonal Gaussian
    ``q = N(m, diag(s^2))``, with ``z = m + s * e``:
    ``E_q[log p(x|z)] = -D/2 log(2 pi sigma^2) - (||x - W m - mu||^2
    + sum_j s_j^2 ||W_{:,j}||^2) / (2 sigma^2)`` (the cross term has mean zero), and
    ``KL = 1/2 sum_j (m_j^2 + s_j^2 - 1 - log s_j^2)``. Neither is computed with the model's
    code: ``m, s`` are the encoder weights set by ``_linear_vae``. The model's one-sample loss
    is averaged over ``R`` replicates per point and must sit within 5 Monte-Carlo standard
    errors (its only randomness is ``e``); a wrong ``beta`` moves the mean by ``(beta - 1) KL``,
    which here is tens of standard errors.
    """
    W, mu = _ppca()
    model = _linear_vae(W, mu, enc_shift=0.3, enc_var_scale=2.0, cls=cls)
    assert model.beta == beta
    x = _data(W, mu, 7)
    m_diag = S.pow(2) + SIGMA**2
    m = (x - mu) @ (W.T / m_diag[:, None]).T + 0.3  # the encoder mean set above
    s2 = (SIGMA**2 / m_diag * 2.0).expand_as(m)  # and its variance
    sq = (x - m @ W.T - mu).pow(2).sum(1) + (s2 * W.pow(2).sum(0)).sum(1)
    rec = -0.5 * D * math.log(2 * math.pi * SIGMA**2) - sq / (2 * SIGMA**2)
    kl = 0.5 * (m.pow(2) + s2 - 1 - s2.log()).sum(1)
    expected = -(rec - beta * kl)
    R = 400
    torch.manual_seed(3)
    with torch.no_grad():
        reps = model.eval().loss(x.repeat(R, 1)).reshape(R, len(x))
    est, se = reps.mean(0), reps.std(0) / math.sqrt(R)
    assert ((est - expected).abs() <= 5 * se).all(), (est - expected) / se
    if beta != 1.0:  # the check can tell beta from 1: ignoring beta would miss by > 10 s.e.
        assert ((beta - 1) * kl > 10 * se).all()


def test_conv_vae_shapes_and_bernoulli_range():
    torch.manual_seed(0)
    model = VAE(
        (1, 8, 8), latent_dim=3, architecture="conv", channels=(4, 8), likelihood="bernoulli"
    )
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    assert model.loss(x).shape == (4,)
    s = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 8, 8) and s.min() >= -1 and s.max() <= 1
    with pytest.raises(ValueError, match="divisible"):
        VAE((1, 10, 10), architecture="conv", channels=(4, 8))
    with pytest.raises(ValueError, match="conv"):
        VAE((4,), architecture="conv")
    with pytest.raises(ValueError, match="likelihood|decoder"):
        VAE((4,), likelihood="poisson")
