"""``clip_x0``: the data prediction clamped to a range, the noise prediction kept on the path."""

from __future__ import annotations

import pytest
import torch

from probpath.paths import AffinePath, ClippedField, GaussianMixtureOracle
from probpath.paths.field import FunctionField
from probpath.sampling.samplers import sample_path


def _oracle(path="ddpm"):
    means = torch.tensor([[0.8, -0.5], [-0.6, 0.4]], dtype=torch.float64)
    var = torch.full((2, 2), 0.02, dtype=torch.float64)
    return GaussianMixtureOracle([0.5, 0.5], means, var, AffinePath(path))


@pytest.mark.parametrize("path", ["ddpm", "vp", "linear"])
def test_clipped_pair_stays_on_the_path(path):
    """x0_hat in [low, high] and x_t = alpha x0_hat + sigma eps_hat exactly (float64)."""
    oracle = _oracle(path)
    clipped = ClippedField(oracle, -0.5, 0.5)
    g = torch.Generator().manual_seed(0)
    x = 2 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.98 + 0.01
    x0, eps = clipped.x0_eps(x, t)
    v = oracle.path(t)
    assert x0.min() >= -0.5 and x0.max() <= 0.5
    back = v.alpha[:, None] * x0 + v.sigma[:, None] * eps
    torch.testing.assert_close(back, x, rtol=0, atol=1e-12)


def test_a_range_that_holds_everything_changes_nothing():
    oracle = _oracle()
    x = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for t in (0.3, torch.full((32,), 0.7, dtype=torch.float64)):
        ref, got = oracle.x0_eps(x, t), ClippedField(oracle, -1e9, 1e9).x0_eps(x, t)
        torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(got[1], ref[1], rtol=1e-10, atol=1e-10)


def test_where_sigma_is_zero_the_fields_eps_is_kept():
    oracle = _oracle("linear")  # sigma(0) = 0
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    t = torch.zeros(8, dtype=torch.float64)
    x0, eps = ClippedField(oracle, -0.1, 0.1).x0_eps(x, t)
    assert torch.isfinite(eps).all()
    torch.testing.assert_close(eps, oracle.x0_eps(x, t)[1])
    assert x0.abs().max() <= 0.1


def test_clip_x0_keeps_a_bad_eps_field_in_range():
    """A field predicting eps = 0 claims x0_hat = x / alpha, which explodes near t = 1 (alpha
    -> 0.006 on the DDPM schedule); deterministic sampling follows it out of range unless
    x0_hat is clipped, and then the last step returns a value inside the range."""
    field = FunctionField(lambda x, t: torch.zeros_like(x), AffinePath("ddpm"), "eps")
    g = torch.Generator().manual_seed(0)
    kw = {"sampler": "dpmpp_2m", "steps": 10, "dtype": torch.float64}
    free = sample_path(field, (256, 2), generator=g, **kw).x
    g = torch.Generator().manual_seed(0)
    out = sample_path(field, (256, 2), generator=g, clip_x0=(-1.0, 1.0), **kw)
    assert free.abs().max() > 10
    assert out.x.abs().max() <= 1.0 + 1e-12
    assert out.nfe == 10  # clipping adds no evaluations


@pytest.mark.parametrize("bad", [(1.0, -1.0), (0.0,), "wide"])
def test_bad_clip_x0_is_a_clear_error(bad):
    field = FunctionField(lambda x, t: torch.zeros_like(x), AffinePath("ddpm"), "eps")
    with pytest.raises(ValueError, match="clip_x0"):
        sample_path(field, (4, 2), clip_x0=bad)
