"""Factor-CLS (Higgins et al. 2017) on synthetic encoders whose score is known exactly."""

from __future__ import annotations

import math

import pytest
import torch

from probpath.metrics import factor_cls_score, factor_cls_votes

SIZES = (3, 6, 8, 8, 8)  # the shapes2d grid, with a toy renderer: the image IS the factors


def _identity_render(v):
    return v.double()


def _perfect(x):
    # one code per factor, scaled to [0, 1]: perfectly disentangled
    return x / (torch.tensor(SIZES, dtype=x.dtype) - 1)


def _perfect_score(**options):
    """Factor-CLS of the perfect encoder with 500 / 500 votes (seed 1)."""
    return factor_cls_score(
        _perfect,
        _identity_render,
        SIZES,
        n_train=500,
        n_test=500,
        generator=torch.Generator().manual_seed(1),
        **options,
    )


def test_votes_zero_exactly_on_the_fixed_factor():
    z_diff, k = factor_cls_votes(
        _perfect,
        _identity_render,
        SIZES,
        40,
        n_pairs=16,
        generator=torch.Generator().manual_seed(0),
    )
    assert z_diff.shape == (40, 5) and k.shape == (40,)
    assert torch.all(z_diff[torch.arange(40), k] == 0.0)
    # the other factors differ in some pair: a factor of size s agrees in all 16 pairs with
    # probability s^-16 <= 3^-16
    others = torch.ones_like(z_diff, dtype=torch.bool)
    others[torch.arange(40), k] = False
    assert torch.all(z_diff[others] > 0.0)


def test_perfectly_disentangled_encoder_scores_100_percent():
    # every vote has z_diff[k] = 0 and all other coordinates > 0 (previous test), so the
    # linear rule "argmin over coordinates" labels every vote correctly, with a margin: the
    # other coordinates average |v1 - v2| / (s - 1) over 64 pairs (mean (s + 1) / (3 s) >= 0.375,
    # s.d. over 64 pairs < 0.05). A logistic regression on such separable votes classifies every
    # one: the expected score is exactly 1.
    res = _perfect_score()
    assert res.accuracy == 1.0 and res.train_accuracy == 1.0
    assert res.chance == pytest.approx(0.2) and (res.n_pairs, res.n_test) == (64, 500)


def test_uninformative_encoder_scores_chance():
    # codes independent of the data: each test label k is uniform on 5 factors and independent
    # of the trained classifier's prediction, so every test vote is right with probability
    # exactly 1/5, and the accuracy is Binomial(n_test, 1/5) / n_test: s.e. sqrt(0.16 / n).
    noise = torch.Generator().manual_seed(7)

    def random_codes(x):
        return torch.randn(len(x), 10, generator=noise, dtype=torch.float64)

    n_test = 1000
    res = factor_cls_score(
        random_codes,
        _identity_render,
        SIZES,
        n_pairs=8,
        n_train=500,
        n_test=n_test,
        generator=torch.Generator().manual_seed(2),
    )
    se = math.sqrt(0.2 * 0.8 / n_test)
    assert abs(res.accuracy - 0.2) < 4 * se  # 4 s.e.: two-sided p ~ 6e-5


def test_same_generator_same_score():
    opts = {"n_pairs": 4, "n_train": 60, "n_test": 40}
    a = factor_cls_score(
        _perfect, _identity_render, SIZES, **opts, generator=torch.Generator().manual_seed(5)
    )
    b = factor_cls_score(
        _perfect, _identity_render, SIZES, **opts, generator=torch.Generator().manual_seed(5)
    )
    assert a == b


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="factor_sizes"):
        factor_cls_score(_perfect, _identity_render, (3,))
    with pytest.raises(ValueError, match="factor_sizes"):
        factor_cls_score(_perfect, _identity_render, (3, 1))
    with pytest.raises(ValueError, match="n_pairs"):
        factor_cls_score(_perfect, _identity_render, SIZES, n_pairs=0)
    with pytest.raises(ValueError, match="encode must return"):
        factor_cls_score(lambda x: x[:, 0], _identity_render, SIZES, n_train=4, n_test=4)


@pytest.mark.parametrize("standardize", [True, False])
def test_fixed_factor_subset_labels_and_scores(standardize):
    """Higgins et al. fix one of four dSprites factors (never shape): the votes' labels come
    from the subset only, chance is 1/4, and a perfect encoder still scores exactly 1 (the
    argmin argument of the test above holds for the subset's coordinates; shape's coordinate
    is never zero, as shape varies in every vote)."""
    fixed = [1, 2, 3, 4]
    z_diff, k = factor_cls_votes(
        _perfect,
        _identity_render,
        SIZES,
        200,
        n_pairs=16,
        fixed_factors=fixed,
        generator=torch.Generator().manual_seed(3),
    )
    assert set(k.tolist()) == set(fixed)  # 200 draws miss a label with prob <= 4 (3/4)^200
    assert torch.all(z_diff[torch.arange(200), k] == 0.0) and torch.all(z_diff[:, 0] > 0.0)
    res = _perfect_score(fixed_factors=fixed, standardize=standardize)
    assert res.accuracy == 1.0 and res.chance == pytest.approx(0.25)


def test_standardised_votes_uninformative_encoder_scores_chance():
    # as test_uninformative_encoder_scores_chance, standardising the votes, over 4 factors:
    # accuracy ~ Binomial(n_test, 1/4) / n_test, s.e. sqrt(3 / 16 / n_test)
    noise = torch.Generator().manual_seed(8)
    n_test = 1000
    res = factor_cls_score(
        lambda x: torch.randn(len(x), 10, generator=noise, dtype=torch.float64),
        _identity_render,
        SIZES,
        n_pairs=8,
        n_train=500,
        n_test=n_test,
        fixed_factors=[1, 2, 3, 4],
        standardize=True,
        generator=torch.Generator().manual_seed(2),
    )
    assert abs(res.accuracy - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n_test)  # 4 s.e.


def test_bad_fixed_factors_are_named():
    for bad in ([1], [1, 1], [0, 5], [-1, 2]):
        with pytest.raises(ValueError, match="fixed_factors"):
            factor_cls_score(_perfect, _identity_render, SIZES, fixed_factors=bad)
