"""The Factor-CLS protocol moved into the package (shared by the survey and the benchmark)."""

from __future__ import annotations

import math

import pytest
import torch

from probpath.data import SHAPES2D_SIZES
from probpath.survey.disentanglement import (
    FIXED_FACTORS,
    IMAGE_SIZE,
    grid_factors,
    grid_index,
    score_factor_vae,
    train_factor_vae,
)


def test_grid_index_inverts_grid_factors():
    grid = grid_factors()
    assert grid.shape == (math.prod(SHAPES2D_SIZES), len(SHAPES2D_SIZES))  # 3*6*8*8*8 = 9216
    # the grid is row-major, so row i's mixed-radix number is i exactly
    assert torch.equal(grid_index(grid), torch.arange(len(grid)))


def test_training_needs_a_stopping_rule():
    with pytest.raises(ValueError, match="steps or time_budget"):
        train_factor_vae(1.0, 0, steps=None, time_budget=None)


def test_same_seed_same_score_and_untrained_codes_near_chance():
    """Two steps of training leave the encoder close to its random initialisation; its
    score is a valid accuracy, identical for the same seed (the votes are seeded)."""
    run = train_factor_vae(1.0, 0, steps=2, n_images=256, hidden=(32,))
    assert run.steps == 2
    a = score_factor_vae(run.model, 0, n_train=60, n_test=60)
    b = score_factor_vae(run.model, 0, n_train=60, n_test=60)
    assert a == b
    assert a.chance == 1 / len(FIXED_FACTORS) == 1 / 4  # scale, rotation, x, y
    assert 0.0 <= a.accuracy <= 1.0 and a.n_test == 60
    assert run.model.event_shape == (1, IMAGE_SIZE, IMAGE_SIZE) == (1, 64, 64)  # dSprites'


def test_protocol_options_reach_the_metric():
    """The five-factor standardised variant of earlier sessions stays reachable; a 32x32 model
    is scored on a 32x32 grid (the images follow the model's size)."""
    run = train_factor_vae(1.0, 0, steps=1, n_images=64, hidden=(16,), size=32)
    res = score_factor_vae(run.model, 0, n_train=40, n_test=40, fixed_factors=None)
    assert res.chance == 1 / len(SHAPES2D_SIZES)
