"""Shared fixtures: float64 by default for tests, seeded generators, CUDA marker handling."""

from __future__ import annotations

import pytest
import torch

# Tests use tiny tensors: one intra-op thread avoids oversubscription (and spin-waiting)
# when several test processes share the cores; it also makes timings less noisy.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def gen():
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(0)
