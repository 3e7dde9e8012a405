"""Reference networks: shapes, time features against their formulas, class input, errors."""

from __future__ import annotations

import math

import pytest
import torch

from probpath.nn import FourierFeatures, SinusoidalEmbedding, TimeMLP, UNet, time_embedding


def test_sinusoidal_matches_formula():
    emb = SinusoidalEmbedding(6, scale=1000.0, max_period=10000.0)
    t = torch.tensor([0.0, 0.25])
    out = emb(t)
    freqs = [10000.0 ** (-k / 3) for k in range(3)]
    expect = [
        [math.cos(1000 * tt * f) for f in freqs] + [math.sin(1000 * tt * f) for f in freqs]
        for tt in (0.0, 0.25)
    ]
    torch.testing.assert_close(out, torch.tensor(expect), rtol=1e-5, atol=1e-5)


def test_fourier_seeded_and_bounded():
    a, b = FourierFeatures(8, seed=3), FourierFeatures(8, seed=3)
    t = torch.rand(5)
    torch.testing.assert_close(a(t), b(t))
    out = a(t)
    # cos^2 + sin^2 = 1 for every frequency
    torch.testing.assert_close(out[:, :4] ** 2 + out[:, 4:] ** 2, torch.ones(5, 4))
    assert "freqs" in a.state_dict()  # saved with the model


@pytest.mark.parametrize("bad", [0, 5])
def test_embedding_dim_errors(bad):
    with pytest.raises(ValueError, match="dim"):
        SinusoidalEmbedding(bad)
    with pytest.raises(ValueError, match="time_embedding"):
        time_embedding("nope", 8)


@pytest.mark.parametrize("kind", ["sinusoidal", "fourier"])
def test_time_mlp_shapes_and_classes(kind):
    net = TimeMLP(3, hidden=(16, 16), time_embedding=kind, num_classes=4)
    x, t = torch.randn(5, 3), torch.rand(5)
    y = net(x, t, torch.tensor([0, 1, 2, 3, 0]))
    assert y.shape == (5, 3)
    y_null = net(x, t)  # no label -> the extra "null" class
    assert y_null.shape == (5, 3) and not torch.equal(y, y_null)
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_time_mlp_depends_on_time():
    net = TimeMLP(2, hidden=(16,))
    x = torch.randn(4, 2)
    assert not torch.allclose(net(x, torch.zeros(4)), net(x, torch.ones(4)))


@pytest.mark.parametrize(
    ("shape", "mult"), [((1, 8, 8), (1, 2)), ((3, 16, 16), (1, 2)), ((3, 32, 32), (1, 2, 2))]
)
def test_unet_shapes(shape, mult):
    net = UNet(shape, base_channels=8, channel_mult=mult, attention=True, num_classes=2)
    x = torch.randn(2, *shape)
    y = net(x, torch.rand(2), torch.tensor([0, 1]))
    assert y.shape == x.shape
    y.sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing


def test_unet_zero_output_at_init_then_learns():
    torch.manual_seed(0)
    net = UNet((1, 8, 8), base_channels=8)
    x = torch.randn(4, 1, 8, 8)
    assert torch.count_nonzero(net(x, torch.rand(4))) == 0  # zero-initialised last conv
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        ((net(x, torch.rand(4)) - x) ** 2).mean().backward()
        opt.step()
    assert torch.count_nonzero(net(x, torch.rand(4))) > 0


def test_unet_errors():
    with pytest.raises(ValueError, match="divisible"):
        UNet((1, 10, 10), channel_mult=(1, 2, 2))
    with pytest.raises(ValueError, match="C, H, W"):
        UNet((8, 8))
