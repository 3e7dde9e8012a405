"""CycleGAN: domain transforms, the two-optimizer step, the reservoir, and a 2-D translation."""

from __future__ import annotations

import math

import pytest
import torch

from probpath.adversarial import CycleGAN, domain_transform

F64 = torch.float64


def test_domain_transforms():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(5, 3, generator=g, dtype=F64)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)  # +90 degrees
    out = domain_transform(v, "rotate90")
    torch.testing.assert_close(out[:, :2], v[:, :2] @ rot.T)
    torch.testing.assert_close(out[:, 2:], v[:, 2:])
    img = torch.randn(2, 1, 4, 4, generator=g, dtype=F64)
    torch.testing.assert_close(domain_transform(img, "rotate90"), torch.rot90(img, 1, (2, 3)))
    for kind, x in [("rotate90", v), ("rotate90", img)]:
        y = x
        for _ in range(4):
            y = domain_transform(y, kind)
        torch.testing.assert_close(y, x)
    torch.testing.assert_close(domain_transform(img, "mirror"), img.flip(-1))
    torch.testing.assert_close(domain_transform(v, "negate"), -v)
    with pytest.raises(ValueError, match="transform"):
        domain_transform(v, "shear")


def test_train_step_reservoir_and_sampling():
    torch.manual_seed(0)
    model = CycleGAN((2,), hidden=(8,), reservoir_size=6)
    x = torch.arange(8.0).reshape(4, 2)
    opts = {n: torch.optim.Adam(g.params, lr=1e-3) for n, g in model.optimizer_groups().items()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    calls = []

    def update(loss, group):
        loss.backward()
        opts[group].step()
        model.zero_grad(set_to_none=True)
        calls.append(group)

    out = model.train_step(x, None, 0, update)
    assert calls == ["discriminator", "generator"] and set(out) == {"d_loss", "g_loss"}
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    # the reservoir is a ring buffer of domain-A training rows
    torch.testing.assert_close(model.reservoir[:4], x)
    model.train_step(x + 100, None, 1, update)
    torch.testing.assert_close(model.reservoir[4:], x[:2] + 100)
    torch.testing.assert_close(model.reservoir[:2], x[2:] + 100)
    with torch.no_grad():
        s = model.sample(5, generator=torch.Generator().manual_seed(0))
        src = model.reservoir[torch.randint(0, 6, (5,), generator=torch.Generator().manual_seed(0))]
        torch.testing.assert_close(s, model.translate(src, "AB"))
    with pytest.raises(NotImplementedError, match="implicit"):
        model.log_prob(x)
    with pytest.raises(ValueError, match="source"):
        model.sample(3, source=torch.zeros(2, 2))


def test_loss_is_per_sample_and_domains_are_unpaired():
    torch.manual_seed(0)
    model = CycleGAN((1, 8, 8), transform="mirror", architecture="conv", channels=(4, 8))
    x = torch.randn(5, 1, 8, 8)
    assert model.loss(x).shape == (5,)
    a, b = model.domains(x)
    torch.testing.assert_close(a, x)
    torch.testing.assert_close(b, x.roll(1, 0).flip(-1))
    assert model.translate(x, "BA").shape == x.shape


@pytest.mark.slow
def test_cyclegan_learns_the_rotation_between_two_gaussian_domains():
    """Domain A: an elongated Gaussian; B: its 90-degree rotation. After training, G_AB's
    outputs have the covariance of B (error below 30% of the untrained one) and the cycle
    A -> B -> A reconstructs within 0.25 (data scale ~1.5)."""
    from probpath.data.dataset import Dataset
    from probpath.training import TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 2, generator=g) * torch.tensor([1.5, 0.3]) + torch.tensor([1.0, 0.0])
    target_cov = torch.cov(domain_transform(x, "rotate90").T)
    torch.manual_seed(0)
    model = CycleGAN((2,), hidden=(32, 32))

    def errors(m):
        with torch.no_grad():
            fb = m.translate(x, "AB")
            cyc = (m.translate(fb, "BA") - x).norm(dim=1).mean()
        return torch.linalg.matrix_norm(torch.cov(fb.T) - target_cov), cyc

    cov0, _ = errors(model)
    cfg = TrainConfig(
        steps=500,
        batch_size=256,
        lr=2e-3,
        warmup_steps=0,
        ema_decay=None,
        device="cpu",
        progress="off",
        seed=0,
    )
    trained = Trainer(cfg).fit(model, Dataset(x)).model
    cov1, cyc1 = errors(trained)
    assert cov1 < 0.3 * cov0
    assert cyc1 < 0.25
    assert math.isfinite(float(cyc1))
