"""Random draws of the path layer: seeded through ``generator`` and with the right law.

Added after a mutation run on ``paths/`` (tests/README.md): the prior's scale and the
``generator`` arguments of ``AffinePath.sample``, ``prior_sample`` and the oracle's
``sample`` were not checked.
"""

from __future__ import annotations

import math

import pytest
import torch

from probpath.paths.affine import AffinePath
from probpath.paths.oracle import GaussianMixtureOracle

DT = torch.float64


@pytest.mark.parametrize("schedule", ["vp", "ve", "linear"])
def test_prior_sample_is_n0_prior_std_and_seeded(schedule):
    """``prior_sample`` draws ``N(0, s^2 I)``, ``s = prior_std``: the mean within 5 standard
    errors ``s / sqrt(n)``, the variance within 5 of ``s^2 sqrt(2 / n)``."""
    path = AffinePath(schedule)
    s, n = path.schedule.prior_std, 40_000
    a = path.prior_sample((n, 2), generator=torch.Generator().manual_seed(0), dtype=DT)
    b = path.prior_sample((n, 2), generator=torch.Generator().manual_seed(0), dtype=DT)
    assert torch.equal(a, b) and a.dtype == DT
    assert (a.mean(0).abs() <= 5 * s / math.sqrt(n)).all()
    assert ((a.var(0) - s**2).abs() <= 5 * s**2 * math.sqrt(2 / n)).all()


def test_path_sample_draws_its_noise_from_generator():
    path = AffinePath("vp")
    x0, t = torch.ones(6, 3, dtype=DT), torch.full((6,), 0.5, dtype=DT)
    a = path.sample(x0, t, generator=torch.Generator().manual_seed(1))
    b = path.sample(x0, t, generator=torch.Generator().manual_seed(1))
    c = path.sample(x0, t, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.x_t, b.x_t) and not torch.equal(a.x_t, c.x_t)
    torch.testing.assert_close(a.x_t, a.alpha[:, None] * x0 + a.sigma[:, None] * a.eps)
    assert torch.equal(a.t, t)


@pytest.mark.parametrize("t", [0.0, 0.4])
def test_oracle_sample_is_seeded_float64_and_takes_one(t):
    oracle = GaussianMixtureOracle([0.3, 0.7], [[-1.0, 0.0], [2.0, 1.0]], [[0.2, 0.3], [0.5, 0.1]])
    a = oracle.sample(5, t, generator=torch.Generator().manual_seed(3))
    b = oracle.sample(5, t, generator=torch.Generator().manual_seed(3))
    c = oracle.sample(5, t, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.dtype == DT
    assert oracle.sample(1, t, generator=torch.Generator().manual_seed(0)).shape == (1, 2)
    with pytest.raises(ValueError):
        oracle.sample(0, t)
