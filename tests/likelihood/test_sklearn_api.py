"""probpath's estimators inside scikit-learn's machinery: Pipeline, GridSearchCV, clone.

Each test runs the same scikit-learn workflow with scikit-learn's class and with probpath's
on the same data and compares the results. Both libraries run the same float64 EM from the
same k-means start (``random_state``), so they agree to round-off: the tolerances are 1e-10
relative (observed ~1e-13, see test_mixture_gaussian.py), far below any modelling
difference. Also: the Bernoulli / Poisson families (which scikit-learn's generic checks
cannot feed, as those checks draw real-valued data) keep the estimator contract here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from probpath.core.model import draw
from probpath.likelihood import (
    BayesianGaussianMixture,
    BernoulliMixture,
    GaussianMixture,
    PoissonMixture,
)

RTOL = 1e-10


def _blobs(n=300, seed=0):
    rng = np.random.RandomState(seed)
    centers = np.array([[0.0, 0.0], [6.0, 1.0], [2.0, 7.0]])
    return centers[rng.randint(3, size=n)] * 10 + rng.randn(n, 2) * [10.0, 3.0] + 100.0


def test_pipeline_predict_and_score_match_sklearn():
    x = _blobs()
    pp = make_pipeline(StandardScaler(), GaussianMixture(3, random_state=0)).fit(x)
    sk = make_pipeline(StandardScaler(), SkGaussianMixture(3, random_state=0)).fit(x)
    np.testing.assert_array_equal(pp.predict(x), sk.predict(x))
    assert np.isclose(pp.score(x), sk.score(x), rtol=RTOL)
    np.testing.assert_allclose(pp.score_samples(x), sk.score_samples(x), rtol=RTOL)


def _bic_scorer(estimator, x, y=None):
    return -estimator.bic(x)  # GridSearchCV maximises; lower BIC is better


@pytest.mark.parametrize("scoring", [None, _bic_scorer], ids=["default", "bic"])
def test_grid_search_over_n_components_and_covariance_type(scoring):
    x = _blobs(n=240, seed=1)
    grid = {"n_components": [1, 2, 3, 4], "covariance_type": ["full", "diag", "spherical"]}
    kw = {"cv": 3, "scoring": scoring}
    pp = GridSearchCV(GaussianMixture(random_state=0), grid, **kw).fit(x)
    sk = GridSearchCV(SkGaussianMixture(random_state=0), grid, **kw).fit(x)
    assert pp.best_params_ == sk.best_params_
    np.testing.assert_allclose(
        pp.cv_results_["mean_test_score"], sk.cv_results_["mean_test_score"], rtol=RTOL
    )
    assert isinstance(pp.best_estimator_, GaussianMixture)


@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_clone_of_unfitted_and_fitted_estimators(cls):
    x = _blobs(n=200, seed=2)
    est = cls(n_components=3, covariance_type="diag", random_state=0, max_iter=50)
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and fresh is not est
    est.fit(x)
    again = clone(est)  # a clone is unfitted, with the same parameters
    assert again.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        again.predict(x)
    np.testing.assert_allclose(again.fit(x).means_, est.means_, rtol=RTOL)
    # set_params round trip
    est.set_params(n_components=2)
    assert est.get_params()["n_components"] == 2 and "n_components=2" in repr(est)


def test_clone_matches_sklearn_on_the_same_data():
    x = _blobs(n=200, seed=3)
    pp = clone(GaussianMixture(3, random_state=0)).fit(x)
    sk = clone(SkGaussianMixture(3, random_state=0)).fit(x)
    np.testing.assert_allclose(np.sort(pp.means_, 0), np.sort(sk.means_, 0), rtol=RTOL)
    assert np.isclose(pp.lower_bound_, sk.lower_bound_, rtol=RTOL)


def test_numpy_and_torch_in_and_out_float32_kept():
    x = _blobs(n=200, seed=4)
    gm = GaussianMixture(3, random_state=0).fit(x.astype(np.float32))
    assert isinstance(gm.means_, np.ndarray) and gm.means_.dtype == np.float32
    out = gm.score_samples(x.astype(np.float32))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert gm.predict(x).dtype == np.int64
    xs, ys = gm.sample(5)
    assert isinstance(xs, np.ndarray) and xs.shape == (5, 2) and ys.shape == (5,)
    gt = GaussianMixture(3, random_state=0).fit(torch.as_tensor(x))
    assert isinstance(gt.means_, torch.Tensor) and gt.means_.dtype == torch.float64
    assert isinstance(gt.score_samples(torch.as_tensor(x)), torch.Tensor)
    # the generative interface is a tensor for either
    g = torch.Generator().manual_seed(0)
    assert isinstance(draw(gm, 4, generator=g), torch.Tensor)


def test_bad_inputs_name_the_fix():
    x = _blobs(n=50, seed=5)
    gm = GaussianMixture(2, random_state=0)
    with pytest.raises(TypeError, match="toarray"):
        import scipy.sparse

        gm.fit(scipy.sparse.csr_matrix(x))
    with pytest.raises(ValueError, match="Complex data not supported"):
        gm.fit(x + 1j)
    with pytest.raises(ValueError, match="Complex data not supported"):
        gm.fit(torch.as_tensor(x + 1j))
    with pytest.raises(ValueError, match="could not convert"):
        gm.fit(np.array([["a", "b"]] * 10, dtype=object))


@pytest.mark.parametrize(
    "cls, data",
    [
        (BernoulliMixture, lambda rng: (rng.rand(100, 4) < 0.3).astype(float)),
        (PoissonMixture, lambda rng: rng.poisson(3.0, size=(100, 4)).astype(float)),
    ],
)
def test_families_keep_the_estimator_contract(cls, data):
    x = data(np.random.RandomState(0))
    est = cls(2, random_state=0)
    with pytest.raises(NotFittedError):
        est.predict(x)
    assert clone(est).get_params() == est.get_params()
    est.fit(x)
    assert isinstance(est.weights_, np.ndarray)
    assert est.predict(x).shape == (100,) and np.array_equal(est.labels_, est.predict(x))
    xs, ys = est.sample(7)
    assert xs.shape == (7, 4) and ys.shape == (7,)


def test_spherical_bgmm_takes_the_scalar_covariance_prior_its_docstring_promises():
    """Issue #12: a 0-d prior used to become 1-d (np.ascontiguousarray) and be rejected."""
    x = _blobs(n=100, seed=6)
    m = BayesianGaussianMixture(2, covariance_type="spherical", covariance_prior=0.5).fit(x)
    assert np.ndim(m.covariance_prior_) == 0 and float(m.covariance_prior_) == 0.5
