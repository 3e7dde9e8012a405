"""Shared oracle fixtures for the sampler and likelihood tests (float64, 2-D, three components)."""

from __future__ import annotations

import pytest
import torch

from probpath.paths import AffinePath, GaussianMixtureOracle


def make_oracle(schedule="vp", **kwargs) -> GaussianMixtureOracle:
    means = torch.tensor([[-2.0, 0.5], [1.5, -1.0], [0.0, 2.0]], dtype=torch.float64)
    covs = torch.tensor(
        [[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.4]], [[0.25, -0.05], [-0.05, 0.15]]],
        dtype=torch.float64,
    )
    return GaussianMixtureOracle([0.5, 0.3, 0.2], means, covs, AffinePath(schedule, **kwargs))


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny tensors: thread start-up costs more than it saves on a shared CPU
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
