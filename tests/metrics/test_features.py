"""Feature-space Fréchet distance / precision-recall with a digits classifier."""

from __future__ import annotations

import pytest
import torch

from probpath.data import load_dataset
from probpath.metrics import (
    dequantize,
    feature_frechet_distance,
    feature_precision_recall,
    fit_feature_extractor,
    frechet_distance,
    quantize,
)


@pytest.fixture(scope="module")
def digits():
    train, test = load_dataset("digits").split(0.2, seed=0)
    flat = lambda d: d.x.double().reshape(len(d), -1)  # noqa: E731
    extractor = fit_feature_extractor(flat(train), train.y, steps=1000, seed=0)
    return flat(train), train.y, flat(test), test.y, extractor


def test_classifier_is_as_accurate_as_scikit_learn_logistic_regression(digits):
    """The feature network is a real digit classifier: on the held-out split it is at least
    as accurate as scikit-learn's logistic regression fitted on the same pixels, less 2
    points (the features are only meaningful if the classes are separated in them)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, ytr, xte, yte, extractor = digits
    ours = (extractor(xte.float()).argmax(1) == yte).double().mean().item()
    ref = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    ref = ref.fit(xtr.numpy(), ytr.numpy()).score(xte.numpy(), yte.numpy())
    assert ours >= ref - 0.02, (ours, ref)


def test_extractor_is_deterministic_for_a_seed(digits):
    xtr, ytr, xte, _, extractor = digits
    again = fit_feature_extractor(xtr, ytr, steps=1000, seed=0)
    torch.testing.assert_close(again.features(xte), extractor.features(xte), rtol=0, atol=0)


def test_feature_distance_tells_a_gaussian_fit_from_digits(digits):
    """A Gaussian fitted to the training pixels matches their mean and covariance, so its
    *pixel* Fréchet distance to held-out digits is close to that of the real training
    digits; in classifier features its blurred samples are much further from the held-out
    digits than real digits are."""
    xtr, _, xte, _, extractor = digits
    g = torch.Generator().manual_seed(1)
    mean, cov = xtr.mean(0), torch.cov(xtr.T) + 1e-6 * torch.eye(xtr.shape[1], dtype=xtr.dtype)
    fake = mean + torch.randn(len(xtr), xtr.shape[1], generator=g, dtype=xtr.dtype) @ (
        torch.linalg.cholesky(cov).T
    )
    pixel_real, pixel_fake = frechet_distance(xtr, xte), frechet_distance(fake, xte)
    feat_real = feature_frechet_distance(xtr, xte, extractor)
    feat_fake = feature_frechet_distance(fake, xte, extractor)
    # Pixels: the Gaussian is within 1.5x of real data (measured 36.6 vs 30.8); features
    # separate them at least twice as strongly (measured 18.1 vs 6.4).
    assert pixel_fake < 1.5 * pixel_real
    assert feat_fake / feat_real > 2 * (pixel_fake / pixel_real)
    real_pr = feature_precision_recall(xte, xtr, extractor)
    fake_pr = feature_precision_recall(xte, fake, extractor)
    assert fake_pr.precision < real_pr.precision


def test_an_extractor_with_the_grid_judges_inputs_snapped_to_it(digits):
    """Given the pixel grid, the extractor sees dequantised data as the integer data, and a
    continuous sample as its rounded, clamped version (FID on 8-bit files)."""
    xtr, ytr, xte, _, _ = digits
    grid = (17, (0.0, 16.0))
    ext = fit_feature_extractor(xtr, ytr, steps=50, seed=0, n_levels=17, value_range=(0, 16))
    again = fit_feature_extractor(
        dequantize(xtr, *grid, torch.Generator().manual_seed(1)), ytr, steps=50, seed=0,
        n_levels=17, value_range=(0, 16),
    )  # fmt: skip
    torch.testing.assert_close(again.features(xte), ext.features(xte), rtol=0, atol=0)
    noisy = xte + 3 * torch.randn(xte.shape, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(ext.features(noisy), ext.features(quantize(noisy, *grid)))
    assert not torch.equal(ext.features(noisy), ext.features(xte))
    with pytest.raises(ValueError, match="both n_levels and value_range"):
        fit_feature_extractor(xtr, ytr, steps=1, n_levels=17)


def test_bad_input_names_the_argument(digits):
    xtr, ytr, _, _, extractor = digits
    with pytest.raises(ValueError, match="y must have shape"):
        fit_feature_extractor(xtr, ytr[:-1], steps=1)
    with pytest.raises(ValueError, match="values per sample"):
        extractor.features(torch.zeros(3, 10))
