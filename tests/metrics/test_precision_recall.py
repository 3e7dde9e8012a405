"""Improved precision / recall: exact values on constructed sets and a direct re-implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probpath.metrics import precision_recall

F64 = torch.float64


def test_identical_sets_have_full_precision_and_recall():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    res = precision_recall(x, x)
    assert res.precision == 1.0 and res.recall == 1.0


def test_dropped_mode_costs_recall_not_precision():
    # Real data: blob A (30 points near 0) and blob B (20 points near (100, 0)). The model
    # reproduces blob A exactly: each fake point is a real point (distance 0 <= its radius),
    # so precision = 1; real points of A are fake points, those of B lie ~100 away from every
    # fake ball (radii are within-A distances, < 10): recall = 30 / 50.
    g = torch.Generator().manual_seed(1)
    a = torch.randn(30, 2, generator=g, dtype=F64)
    b = torch.randn(20, 2, generator=g, dtype=F64) + torch.tensor([100.0, 0.0], dtype=F64)
    res = precision_recall(torch.cat([a, b]), a, k=3)
    assert res.precision == 1.0
    assert res.recall == pytest.approx(30 / 50, abs=1e-15)


def test_disjoint_sets_score_zero():
    x = torch.randn(25, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    res = precision_recall(x, x + 1000.0)
    assert res.precision == 0.0 and res.recall == 0.0


def test_matches_a_direct_implementation():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(60, 4)), rng.normal(size=(45, 4)) + 1.5
    k = 5

    def radii(s):
        d = np.linalg.norm(s[:, None] - s[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def share_inside(p, c):
        d = np.linalg.norm(p[:, None] - c[None], axis=-1)
        return float((d <= radii(c)[None]).any(1).mean())

    res = precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=k)
    assert res.precision == share_inside(fake, real)
    assert res.recall == share_inside(real, fake)
    assert 0 < res.precision < 1 and 0 < res.recall < 1


def test_precision_recall_errors():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="at least 4 samples"):
        precision_recall(x, x, k=3)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        precision_recall(x, x, k=0)
