"""Dequantisation and bits/dim against hand-derived values."""

from __future__ import annotations

import math

import pytest
import torch

from probpath.data import Dataset, load_dataset
from probpath.metrics import NLLResult, bits_per_dim, dataset_nll, dequantize, nll_nats, quantize

F64 = torch.float64


def _uniform_log_prob(x, low, high):
    """Log-density of the uniform distribution on the box [low, high]^D (-inf outside)."""
    flat = x.reshape(len(x), -1)
    inside = ((flat >= low) & (flat <= high)).all(1)
    lp = torch.full((len(x),), -flat.shape[1] * math.log(high - low), dtype=F64)
    return torch.where(inside, lp, torch.full_like(lp, -math.inf))


def test_uniform_density_on_17_levels_is_log2_17_bits():
    # Digits: 17 levels 0..16, bin width 1. Dequantised data lie in [-1/2, 16.5]^64, where
    # the uniform density is 17^-64: bpd = -(-64 ln 17 + 64 ln 1) / (64 ln 2) = log2 17.
    d = load_dataset("digits", n=200).to(dtype=F64)
    xd = dequantize(d.x, d.n_levels, d.value_range, torch.Generator().manual_seed(0))
    lp = _uniform_log_prob(xd, -0.5, 16.5)
    assert torch.isfinite(lp).all()
    assert bits_per_dim(lp, d.dim, bin_width=d.bin_width) == pytest.approx(math.log2(17), 1e-12)
    res = dataset_nll(lp, d)
    assert res.unit == "bits/dim" and res.value == pytest.approx(math.log2(17), rel=1e-12)
    assert res.stderr == pytest.approx(0.0, abs=1e-12)
    # The same model on data scaled to [-1, 1] (bin width 1/8): support [-17/16, 17/16].
    s = d.scaled(-1, 1)
    xs = dequantize(s.x, s.n_levels, s.value_range, torch.Generator().manual_seed(0))
    lps = _uniform_log_prob(xs, -17 / 16, 17 / 16)
    assert torch.isfinite(lps).all()
    assert dataset_nll(lps, s).value == pytest.approx(math.log2(17), rel=1e-12)
    assert dataset_nll(lps, d, model_range=(-1, 1)).value == pytest.approx(math.log2(17), 1e-12)


def test_piecewise_constant_model_gives_the_discrete_entropy_exactly():
    # A density constant on each bin, p(x) = P(k) / Delta, integrates to P(k) over bin k, so
    # Jensen's bound is tight: bpd of dequantised data = mean -log2 P(k) (here D = 1).
    n_levels, low, high = 5, -2.0, 2.0
    delta = (high - low) / (n_levels - 1)
    probs = torch.tensor([0.1, 0.2, 0.4, 0.2, 0.1], dtype=F64)
    g = torch.Generator().manual_seed(1)
    k = torch.multinomial(probs, 500, replacement=True, generator=g)
    x = (low + k * delta).to(F64)[:, None]
    xd = dequantize(x, n_levels, (low, high), g)
    k_back = torch.round((xd[:, 0] - low) / delta).long()
    assert torch.equal(k_back, k)
    lp = torch.log(probs[k_back] / delta)
    expected = float((-torch.log2(probs[k])).mean())
    assert bits_per_dim(lp, 1, bin_width=delta) == pytest.approx(expected, rel=1e-12)


def test_dequantize_is_uniform_within_each_bin():
    n_levels, value_range = 17, (0.0, 16.0)
    x = torch.randint(0, 17, (20_000, 1), generator=torch.Generator().manual_seed(2)).to(F64)
    xd = dequantize(x, n_levels, value_range, torch.Generator().manual_seed(3))
    u = xd - x + 0.5  # should be U[0, 1): mean 1/2, variance 1/12
    assert u.min() >= 0 and u.max() < 1
    n = u.numel()
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n)
    # Var(sample variance) ~ (mu4 - sigma^4) / n with mu4 = 1/80 for U[0, 1)
    assert abs(float(u.var()) - 1 / 12) < 5 * math.sqrt((1 / 80 - 1 / 144) / n)
    again = dequantize(x, n_levels, value_range, torch.Generator().manual_seed(3))
    assert torch.equal(xd, again)


def test_dequantize_refuses_off_grid_data():
    with pytest.raises(ValueError, match="not on the grid of 17 levels"):
        dequantize(torch.tensor([[0.3]]), 17, (0, 16))
    with pytest.raises(ValueError, match="n_levels must be an integer >= 2"):
        dequantize(torch.zeros(2, 1), 1, (0, 16))
    with pytest.raises(ValueError, match="NaN"):
        dequantize(torch.tensor([[float("nan")]]), 17, (0, 16))


def test_quantize_inverts_dequantize_and_clamps_to_the_range():
    # 8 levels on [-1, 1] (bin 2/7): each dequantised value lies within half a bin of its level
    k = torch.randint(0, 8, (5000, 3), generator=torch.Generator().manual_seed(4)).to(F64)
    x = -1 + (2 / 7) * k
    xd = dequantize(x, 8, (-1, 1), torch.Generator().manual_seed(5))
    torch.testing.assert_close(quantize(xd, 8, (-1, 1)), x, rtol=0, atol=1e-12)
    # off-range values go to the end levels; the nearest level elsewhere
    got = quantize(torch.tensor([[-3.0, 0.2, 0.49, 0.51, 16.4, 99.0]]), 17, (0, 16))
    assert got.tolist() == [[0.0, 0.0, 0.0, 1.0, 16.0, 16.0]]
    with pytest.raises(ValueError, match="value_range must be"):
        quantize(torch.zeros(2, 1), 17, (16, 0))


def test_continuous_nll_in_original_units_after_scaling():
    # Change of variables: data x ~ N(0, 4 I); the model sees x' = s x + c with s = 0.2
    # (range (-5, 5) -> (-1, 1)), where the same law has density N(0, (2s)^2 I). Converting
    # back must give exactly the NLL of the density in the original units.
    g = torch.Generator().manual_seed(4)
    x = 2 * torch.randn(300, 3, generator=g, dtype=F64)
    data = Dataset(x=x, value_range=(-5.0, 5.0))
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=F64), 2.0)
    lp_data = normal.log_prob(x).sum(1)
    scaled = data.scaled(-1, 1)
    lp_model = torch.distributions.Normal(torch.tensor(0.0, dtype=F64), 0.4).log_prob(scaled.x)
    res = dataset_nll(lp_model.sum(1), data, model_range=(-1, 1))
    assert res.unit == "nats/dim"
    assert res.value == pytest.approx(nll_nats(lp_data, 3), rel=1e-12)
    per_dim = -lp_data / 3
    assert res.stderr == pytest.approx(float(per_dim.std() / math.sqrt(300)), rel=1e-9)
    assert isinstance(res, NLLResult)


def test_likelihood_input_errors():
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        bits_per_dim(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="bin_width must be positive"):
        bits_per_dim(torch.zeros(3), 2, bin_width=0.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        nll_nats(torch.tensor([0.0, -math.inf]), 2)
    with pytest.raises(ValueError, match="model_range needs dataset.value_range"):
        dataset_nll(torch.zeros(3), Dataset(x=torch.zeros(3, 2)), model_range=(-1, 1))
