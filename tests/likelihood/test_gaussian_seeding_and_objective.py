"""GaussianMLE / GaussianScoreMatching: seeded sampling and the fitted objective value.

Added after a mutation run (mutmut on ``likelihood/gaussian.py``, see tests/README.md): the
samplers' ``generator`` and the gradient fit's recorded objective were not checked.
"""

from __future__ import annotations

import pytest
import torch

from probpath.likelihood.gaussian import GaussianMLE, GaussianScoreMatching

TYPES = ["full", "diag", "spherical"]


@pytest.fixture
def data():
    """Correlated 3-D Gaussian data with a non-zero mean (float64)."""
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([[2.0, 0.0, 0.0], [0.8, 0.5, 0.0], [-0.3, 0.4, 1.2]], dtype=torch.float64)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64) @ a.T
    return x + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)


@pytest.mark.parametrize("cls", [GaussianMLE, GaussianScoreMatching])
@pytest.mark.parametrize("kind", TYPES)
def test_sampling_is_reproducible_through_generator(data, cls, kind):
    """Same seed, same draws; another seed, other draws; float64 in, float64 out."""
    m = cls(kind).fit(data)
    a = m.sample(50, generator=torch.Generator().manual_seed(7))
    b = m.sample(50, generator=torch.Generator().manual_seed(7))
    c = m.sample(50, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float64 and a.shape == (50, 3)
    torch.manual_seed(0)
    d = m.sample(50)
    torch.manual_seed(0)
    assert torch.equal(d, m.sample(50))  # without a generator: torch's global stream


@pytest.mark.parametrize("kind", TYPES)
def test_gradient_fit_records_the_minimum_of_eq7(data, kind):
    """The minimum of Eq. (7) (without its 1/2, ``J = E[tr grad s + |s|^2 / 2]``) over the
    Gaussian family: ``s = -Lambda (x - mu)`` gives ``J = -tr Lambda + tr(Lambda S Lambda) / 2``,
    minimised by ``mu = xbar`` and ``Lambda = S^{-1}`` (full): ``J = -tr(S^{-1}) / 2``;
    ``Lambda = diag(1 / S_ii)`` (diag): ``-sum_i (1 / S_ii) / 2``; ``Lambda = I / mean_i S_ii``
    (spherical): ``-d / (2 mean_i S_ii)``. L-BFGS reaches it to its 1e-12 gradient tolerance;
    compared at 1e-8 relative (the agreement of the fitted parameters)."""
    m = GaussianScoreMatching(kind, method="gradient").fit(data)
    s = torch.cov(data.T, correction=0)
    expected = {
        "full": -0.5 * torch.linalg.inv(s).trace(),
        "diag": -0.5 * (1 / s.diagonal()).sum(),
        "spherical": -0.5 * 3 / s.diagonal().mean(),
    }[kind]
    assert abs(m.objective_ - float(expected)) <= 1e-8 * abs(float(expected))
