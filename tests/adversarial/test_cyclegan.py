"""CycleGAN: domain transforms, the two-optimizer step, the reservoir, and a 2-D translation."""

from __future__ import annotations

import pytest
import torch

from probpath.adversarial import CycleGAN, domain_transform

from .conftest import moment_error

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
    """Domain A: ``N((1, 0), diag(1.5^2, 0.3^2))``; B: its +90-degree rotation,
    ``N((0, 1), diag(0.3^2, 1.5^2))``. Bounds are half the smallest error of a plausible bug,
    so by the triangle inequality (both errors are norms) a passing model is nearer the truth
    than any such bug.

    Translation, ``e = |m - mu_B| + ||S - Sigma_B||_F`` of ``G_AB(x_A)``. Exact bug errors:
    no rotation (identity) ``sqrt(2) + 2.16 sqrt(2) = 4.47``; rotated the wrong way (-90: B's
    covariance, mean ``(0, -1)``) ``2``; 180 degrees ``4.47``; collapsed to B's mean
    ``||Sigma_B||_F = 2.25``; the untrained generator (ignores the data): measured. So
    ``D = 2`` and the bound is 1. The sampling noise of ``e`` (n = 4096: mean s.e. 0.024,
    covariance 0.05 from ``Var S_ij = (Sigma_ij^2 + Sigma_ii Sigma_jj) / n``) keeps every bug
    above ``2 - 5 (0.075) = 1.6``. (A rotation and a reflection onto B's axes push A forward
    to the same law, so no distribution-level check can tell them apart.)

    Cycle, ``E|G_BA(G_AB(x)) - x|``: a ``G_BA`` that ignores its input does best with A's
    centre (the minimiser of ``E|x - c|`` for a centrally symmetric law), error
    ``E|x - mu_A|`` (~1.2, computed from the data); one that rotates the same way as ``G_AB``
    gives ``2 E|x|``. The bound is half the smaller; the bugs are drawn and checked to fail.
    """
    from probpath.data.dataset import Dataset
    from probpath.training import TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 2, generator=g) * torch.tensor([1.5, 0.3]) + torch.tensor([1.0, 0.0])
    target = domain_transform(x, "rotate90")
    mean_b, cov_b = target.mean(0), torch.cov(target.T)
    torch.manual_seed(0)
    model = CycleGAN((2,), hidden=(32, 32))
    with torch.no_grad():
        untrained = model.translate(x, "AB")
    minus90 = domain_transform(domain_transform(target, "rotate90"), "rotate90")
    bad = {
        "identity": x,
        "-90 degrees": minus90,
        "180 degrees": domain_transform(x, "negate"),
        "collapsed": mean_b.expand(4096, 2),
        "untrained": untrained,
    }
    bound = 0.5 * 2.0  # D / 2, D = the -90-degree bug's exact error above
    for name, s in bad.items():
        assert moment_error(s, mean_b, cov_b) > bound, name
    cycle_bugs = {
        "ignores its input": (x - x.mean(0)).norm(dim=1).mean(),
        "rotates the same way": (domain_transform(target, "rotate90") - x).norm(dim=1).mean(),
    }
    cycle_bound = 0.5 * float(min(cycle_bugs.values()))
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
    with torch.no_grad():
        fb = trained.translate(x, "AB")
        cycle = float((trained.translate(fb, "BA") - x).norm(dim=1).mean())
    err = moment_error(fb, mean_b, cov_b)
    assert err < bound, err
    assert cycle < cycle_bound, (cycle, cycle_bound)
