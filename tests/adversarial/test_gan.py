"""GAN family: losses against Eq. (17), the gradient penalty, two-optimizer training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from probpath.adversarial import (
    GAN,
    WGAN,
    ConditionalGAN,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
)

from .conftest import moment_error

F64 = torch.float64


def _local_update(model, lr=1e-3):
    """A minimal implementation of the Trainer's ``update(loss, group)`` contract."""
    opts = {
        name: torch.optim.Adam(g.params, lr=lr * g.lr_scale, betas=g.betas or (0.9, 0.999))
        for name, g in model.optimizer_groups().items()
    }
    calls: list[str] = []

    def update(loss, group):
        assert loss.ndim == 0
        loss.backward()
        opts[group].step()
        model.zero_grad(set_to_none=True)
        calls.append(group)

    return update, calls


# -- gradient penalty --------------------------------------------------------------------------
def test_gradient_penalty_is_zero_for_unit_linear_critic():
    # entries +-1/8 over 64 pixels: |a| = 1 exactly in floating point
    g = torch.Generator().manual_seed(0)
    sign = torch.randint(0, 2, (1, 8, 8), generator=g).to(F64) * 2 - 1
    a = sign / 8

    def critic(x):
        return (x * a).flatten(1).sum(1) + 0.3

    real = torch.randn(5, 1, 8, 8, generator=g, dtype=F64)
    fake = torch.randn(5, 1, 8, 8, generator=g, dtype=F64)
    gp = gradient_penalty(critic, real, fake, generator=g)
    assert gp.shape == (5,)
    assert torch.equal(gp, torch.zeros(5, dtype=F64))
    # |3a| = 3 exactly: penalty (3 - 1)^2 = 4 for every sample
    gp3 = gradient_penalty(lambda x: critic(3 * x), real, fake, generator=g)
    assert torch.equal(gp3, torch.full((5,), 4.0, dtype=F64))
    # a random unit vector: zero up to rounding
    v = torch.randn(3, generator=g, dtype=F64)
    v = v / v.norm()
    gp_v = gradient_penalty(
        lambda x: x @ v, torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    )
    assert gp_v.abs().max() < 1e-28


def test_gradient_penalty_is_per_sample_over_all_event_dims():
    # D(x) = |x|^2 / 2 has gradient x_hat: penalty (|x_hat| - 1)^2 with the same e draws
    g = torch.Generator().manual_seed(1)
    real = torch.randn(6, 2, 3, 3, generator=g, dtype=F64)
    fake = torch.randn(6, 2, 3, 3, generator=g, dtype=F64)
    gp = gradient_penalty(
        lambda x: 0.5 * x.pow(2).flatten(1).sum(1), real, fake, generator=g.manual_seed(7)
    )
    e = torch.rand(6, generator=torch.Generator().manual_seed(7), dtype=F64)[:, None, None, None]
    x_hat = e * real + (1 - e) * fake
    torch.testing.assert_close(gp, (x_hat.flatten(1).norm(dim=1) - 1).pow(2))


# -- losses and Eq. (17) -----------------------------------------------------------------------
def test_losses_match_their_definitions():
    l_real = torch.linspace(-3, 3, 7, dtype=F64)
    l_fake = torch.linspace(2, -2, 7, dtype=F64)
    d_real, d_fake = torch.sigmoid(l_real), torch.sigmoid(l_fake)
    expected_d = -torch.log(d_real) - torch.log(1 - d_fake)
    for kind in ("minimax", "non-saturating"):
        torch.testing.assert_close(discriminator_loss(kind, l_real, l_fake), expected_d)
    torch.testing.assert_close(generator_loss("minimax", l_fake), torch.log(1 - d_fake))
    torch.testing.assert_close(generator_loss("non-saturating", l_fake), -torch.log(d_fake))
    torch.testing.assert_close(discriminator_loss("wasserstein", l_real, l_fake), l_fake - l_real)
    torch.testing.assert_close(generator_loss("wasserstein", l_fake), -l_fake)
    torch.testing.assert_close(
        discriminator_loss("least-squares", l_real, l_fake), (l_real - 1) ** 2 + l_fake**2
    )


def test_optimal_discriminator_gives_jensen_shannon():
    """With D* = p / (p + q) (logit log p - log q), the discriminator loss averaged over data
    and generator equals log 4 - 2 JSD(p || q) (Goodfellow et al., Thm 1; Eq. 17)."""
    g = torch.Generator().manual_seed(0)
    p = torch.rand(6, generator=g, dtype=F64)
    q = torch.rand(6, generator=g, dtype=F64)
    p, q = p / p.sum(), q / q.sum()
    logit = p.log() - q.log()
    # E_p[-log D*] + E_q[-log(1 - D*)] from the per-sample loss (each term separately)
    zero = torch.zeros(6, dtype=F64)
    real_term = (p * (discriminator_loss("minimax", logit, zero) - F.softplus(zero))).sum()
    fake_term = (q * (discriminator_loss("minimax", zero, logit) - F.softplus(-zero))).sum()
    m = (p + q) / 2
    jsd = 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()
    torch.testing.assert_close(real_term + fake_term, math.log(4) - 2 * jsd)
    # and D* is optimal: any other logit gives a larger loss
    for eps in (-0.3, 0.2):
        worse = (p * F.softplus(-(logit + eps))).sum() + (q * F.softplus(logit + eps)).sum()
        assert worse > real_term + fake_term


# -- models ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [GAN, WGAN, ConditionalGAN])
def test_train_step_updates_both_networks(cls):
    torch.manual_seed(0)
    kwargs = {"num_classes": 3} if cls is ConditionalGAN else {}
    model = cls((2,), latent_dim=2, hidden=(8,), **kwargs)
    x = torch.randn(16, 2)
    cond = torch.randint(0, 3, (16,)) if cls is ConditionalGAN else None
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    update, calls = _local_update(model)
    out = model.train_step(x, cond, 0, update)
    assert calls == ["discriminator"] * model.d_steps + ["generator"]
    assert set(out) == {"d_loss", "g_loss"} and all(math.isfinite(v) for v in out.values())
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert set(changed) == set(before)
    if cls is WGAN:
        assert model.d_steps == 5 and model.gp_weight == 10.0 and model.loss_kind == "wasserstein"
        assert model.discriminator.head.bias is None


def test_two_time_scale_and_spectral_norm():
    torch.manual_seed(0)
    model = GAN((3,), hidden=(16,), g_lr_scale=0.5, d_lr_scale=2.0, spectral_norm=True)
    groups = model.optimizer_groups()
    assert groups["generator"].lr_scale == 0.5 and groups["discriminator"].lr_scale == 2.0
    assert groups["generator"].betas == (0.5, 0.999)
    x = torch.randn(8, 3)
    for _ in range(30):  # power iterations run in training-mode forward passes
        model.discriminator(x)
    for mod in model.discriminator.modules():
        if isinstance(mod, torch.nn.Linear):
            top = torch.linalg.matrix_norm(mod.weight.detach(), ord=2)
            assert abs(float(top) - 1.0) < 1e-3


def test_implicit_density_and_input_checks():
    model = ConditionalGAN((2,), num_classes=3, hidden=(8,))
    with pytest.raises(NotImplementedError, match="implicit"):
        model.log_prob(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        model.loss(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.loss(torch.zeros(2, 2), torch.tensor([0, 3]))
    g = torch.Generator()
    a = model.sample(4, torch.tensor([0, 1, 2, 0]), generator=g.manual_seed(0))
    b = model.sample(4, torch.tensor([1, 1, 1, 1]), generator=g.manual_seed(0))
    assert not torch.equal(a, b)  # the label changes the output for the same noise
    with pytest.raises(ValueError, match="loss"):
        GAN((2,), loss="hinge-ish")


def _train(model, x, steps, lr=2e-3, y=None):
    from probpath.data.dataset import Dataset
    from probpath.training import TrainConfig, Trainer

    cfg = TrainConfig(
        steps=steps,
        batch_size=256,
        lr=lr,
        warmup_steps=0,
        ema_decay=None,
        device="cpu",
        progress="off",
        seed=0,
    )
    return Trainer(cfg).fit(model, Dataset(x, y)).model


@pytest.mark.slow
def test_gan_matches_mean_and_covariance_of_a_gaussian():
    """The generator's (mean, covariance) is nearer the target's than to every plausible bug's.

    The error ``e = |m - mu| + ||S - Sigma||_F`` is a norm, so by the triangle inequality a
    model with ``e < D / 2`` is nearer the truth than any bad generator whose own error is at
    least ``D``. The bad generators and their exact errors, for ``mu = (1, -1)`` and
    ``Sigma = L L^T = [[1, .6], [.6, .61]]``: ignores the mean, ``N(0, Sigma)``: ``|mu| = 1.41``;
    collapses to one point (the mean): ``||Sigma||_F = 1.45``; ignores the covariance,
    ``N(mu, I)``: ``||Sigma - I||_F = 0.93``; ignores the correlation, ``N(mu, diag Sigma)``:
    ``0.6 sqrt(2) = 0.85``; mirrored correlation: ``1.2 sqrt(2) = 1.70``; the untrained generator
    (ignores the data): measured below. So ``D = 0.85`` and the bound is ``0.42``. The sampling
    noise of ``e`` at n = 4096 (s.e. ~0.02 for the mean, ~0.034 for the covariance's Frobenius
    norm, from ``Var S_ij = (Sigma_ij^2 + Sigma_ii Sigma_jj) / n``) is under 0.06, so each bug
    measures above ``D - 5 s.e. = 0.57``, clear of the bound; the bad generators are drawn and
    checked to fail. (A short-trained GAN is *not* within sampling error of the truth: it
    measured e = 0.31, ~5-6 s.e. per part; this bound separates "learned" from "bug" instead.)
    """
    g = torch.Generator().manual_seed(0)
    mean = torch.tensor([1.0, -1.0])
    L = torch.tensor([[1.0, 0.0], [0.6, 0.5]])
    cov = L @ L.T
    x = torch.randn(4096, 2, generator=g) @ L.T + mean
    torch.manual_seed(0)
    model = GAN((2,), latent_dim=4, hidden=(32, 32))

    def draw(m):
        with torch.no_grad():
            return m.sample(4096, generator=torch.Generator().manual_seed(1))

    z = torch.randn(4096, 2, generator=torch.Generator().manual_seed(2))
    mirrored = L.clone()
    mirrored[1, 0] = -mirrored[1, 0]
    bad = {
        "ignores the mean": z @ L.T,
        "collapses to a point": mean.expand(4096, 2),
        "ignores the covariance": z + mean,
        "ignores the correlation": z * cov.diagonal().sqrt() + mean,
        "mirrored correlation": z @ mirrored.T + mean,
        "untrained generator": draw(model),
    }
    bound = 0.5 * 0.6 * math.sqrt(2)  # D / 2, D = the smallest exact bug error above
    for name, s in bad.items():
        assert moment_error(s, mean, cov) > bound, name
    err = moment_error(draw(_train(model, x, 600)), mean, cov)
    assert err < bound, err


@pytest.mark.slow
def test_gan_covers_the_modes_of_8gaussians(capsys):
    """Every mode is covered and most samples sit on a mode, with bounds that bugs fail.

    The modes are ``N(c_k, s^2 I)``, ``s = 0.5 / 1.414``, on a circle of radius 2.83 (adjacent
    centres 2.17 = 6.1 s apart). A sample is *near* when within ``3 s`` of a centre: for the
    data that happens with probability ``1 - exp(-4.5) = 0.989`` (chi-square, 2 d.o.f.), so a
    mode receives ``~512 +- 21`` of 4096 samples. A generator that drops a mode puts ~0 samples
    there (the neighbours' tails at 6.1 s contribute < 1e-4 of their mass), so counting a mode
    as covered at a quarter of its share (128, 18 binomial s.e. below 512) makes "covers all
    8" fail for any dropped mode or a collapse. A generator that matches the data's first two
    moments but ignores the modes, ``N(0, (2.83^2 / 2 + s^2) I)``, is near with probability
    ~0.41 (measured below); the near-fraction bound is the midpoint between it and the data's
    0.989, and the moment-matched Gaussian, a one-mode collapse and the untrained generator
    are checked to fail it."""
    from probpath.data.toy import make_toy

    x = make_toy("8gaussians", 4096, seed=0)
    ang = torch.arange(8) * math.pi / 4
    centres = 4 * torch.stack([ang.cos(), ang.sin()], 1) / 1.414
    sd = 0.5 / 1.414

    def coverage(s):
        dist = torch.cdist(s, centres)
        near = dist.min(1).values < 3 * sd
        counts = torch.bincount(dist.argmin(1)[near], minlength=8)
        return int((counts >= 4096 / 8 / 4).sum()), near.float().mean().item(), counts

    g = torch.Generator().manual_seed(2)
    spread = math.sqrt(2.83**2 / 2 + sd**2)
    moment_matched = spread * torch.randn(4096, 2, generator=g)
    near_bad = coverage(moment_matched)[1]
    near_bound = 0.5 * (near_bad + (1 - math.exp(-4.5)))
    torch.manual_seed(0)
    model = GAN((2,), latent_dim=4, hidden=(32, 32))
    with torch.no_grad():
        untrained = model.sample(4096, generator=torch.Generator().manual_seed(1))
    one_mode = centres[0] + sd * torch.randn(4096, 2, generator=g)
    for name, s in [("untrained", untrained), ("one mode", one_mode), ("moments", moment_matched)]:
        covered, near, _ = coverage(s)
        assert covered < 8 or near < near_bound, name
    model = _train(model, x, 600)
    with torch.no_grad():
        s = model.sample(4096, generator=torch.Generator().manual_seed(1))
    covered, near, counts = coverage(s)
    with capsys.disabled():
        print(
            f"\n8gaussians: {covered}/8 modes covered, {near:.1%} of samples within 3 sd of a "
            f"mode (bound {near_bound:.1%}); counts {counts.tolist()}"
        )
    assert covered == 8
    assert near > near_bound


def test_conditional_gan_samples_follow_their_label():
    """Three labelled modes ``N(c_k, 0.3^2 I)`` on a circle of radius 3 (pairwise 5.2 apart,
    17 standard deviations). The classifier is the nearest centre (its error on the data
    itself is ~1e-18). A generator that ignores the label draws the same law for every label,
    so its three per-label accuracies sum to 1 and the smallest is at most 1/3; a trained
    conditional generator must beat 1/3 for *every* label by 5 binomial standard errors
    ``sqrt((1/3)(2/3)/n)`` (n = 400 samples per label: threshold 0.45)."""
    g = torch.Generator().manual_seed(0)
    ang = torch.tensor([0.0, 2.0, 4.0]) * math.pi / 3
    centres = 3 * torch.stack([ang.cos(), ang.sin()], 1)
    y = torch.randint(0, 3, (3000,), generator=g)
    x = centres[y] + 0.3 * torch.randn(3000, 2, generator=g)
    torch.manual_seed(0)
    model = ConditionalGAN((2,), num_classes=3, latent_dim=4, hidden=(32, 32))
    model = _train(model, x, 300, y=y)
    n = 400
    threshold = 1 / 3 + 5 * math.sqrt((1 / 3) * (2 / 3) / n)
    for c in range(3):
        with torch.no_grad():
            s = model.sample(n, torch.full((n,), c), generator=torch.Generator().manual_seed(c))
        accuracy = (torch.cdist(s, centres).argmin(1) == c).float().mean().item()
        assert accuracy > threshold, (c, accuracy)
