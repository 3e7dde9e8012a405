"""GaussianMixture against scikit-learn (same data, same initialisation) and against math."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import probpath
from probpath.likelihood.em import ConvergenceWarning
from probpath.likelihood.mixture import GaussianMixture

TYPES = ["full", "tied", "diag", "spherical"]
ATTRS = ["weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"]


def _blobs(n=600, d=3, k=4, seed=0, offset=5.0):
    rng = np.random.RandomState(seed)
    centers = rng.randn(k, d) * 3
    labels = rng.randint(k, size=n)
    a = rng.randn(k, d, d) * 0.3 + np.eye(d)
    return centers[labels] + np.einsum("nij,nj->ni", a[labels], rng.randn(n, d)) + offset


def _init(x, k, ct, seed=1):
    rng = np.random.RandomState(seed)
    d = x.shape[1]
    prec = {
        "full": np.stack([np.eye(d) * 0.5] * k),
        "tied": np.eye(d) * 0.5,
        "diag": np.full((k, d), 0.5),
        "spherical": np.full(k, 0.5),
    }[ct]
    return {
        "weights_init": np.full(k, 1.0 / k),
        "means_init": x[rng.choice(len(x), k, replace=False)],
        "precisions_init": prec,
    }


def _fit_both(x, k, ct, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SkGaussianMixture(k, covariance_type=ct, **kw).fit(x)
        pp = GaussianMixture(k, covariance_type=ct, **kw).fit(x)
    return sk, pp


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300)))


@pytest.mark.parametrize("ct", TYPES)
def test_parity_with_sklearn_same_init(ct):
    x = _blobs()
    k = 4
    sk, pp = _fit_both(x, k, ct, tol=1e-9, max_iter=40, **_init(x, k, ct))
    for name in ATTRS:
        got = getattr(pp, name)
        assert isinstance(got, np.ndarray) and got.dtype == np.float64, name  # NumPy in, out
        want = getattr(sk, name)
        assert got.shape == want.shape, name
        # Relative to each array's scale. Both libraries run the same float64 EM from the
        # same start; they differ only by round-off (eps = 2.2e-16) accumulated over ~15
        # iterations and amplified by the covariances' conditioning: the achieved maximum
        # is 1.2e-13 (precisions_, tied); 1e-11 leaves two orders of magnitude for other
        # BLAS builds, and is five orders tighter than any modelling difference would pass.
        assert np.max(np.abs(got - want)) <= 1e-11 * np.max(np.abs(want)), name
    assert _rel(sk.lower_bound_, pp.lower_bound_) < 1e-13  # achieved <= 1.3e-15
    assert pp.n_iter_ == sk.n_iter_
    assert pp.converged_ == sk.converged_
    np.testing.assert_allclose(pp.lower_bounds_, sk.lower_bounds_, rtol=1e-13)  # 2.2e-15
    # every prediction method and the criteria (same round-off argument; achieved <= 1.2e-13)
    assert np.array_equal(pp.predict(x), sk.predict(x))
    np.testing.assert_allclose(pp.score_samples(x), sk.score_samples(x), rtol=1e-11)
    np.testing.assert_allclose(pp.predict_proba(x), sk.predict_proba(x), rtol=0, atol=1e-11)
    assert math.isclose(pp.score(x), sk.score(x), rel_tol=1e-13)
    assert math.isclose(pp.bic(x), sk.bic(x), rel_tol=1e-13)
    assert math.isclose(pp.aic(x), sk.aic(x), rel_tol=1e-13)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_parity_with_sklearn_default_initialisations(init_params):
    """The same ``random_state`` gives scikit-learn's initial responsibilities."""
    x = _blobs(n=300)
    sk, pp = _fit_both(x, 3, "full", init_params=init_params, random_state=3, max_iter=20)
    assert _rel(sk.means_, np.asarray(pp.means_)) < 1e-6
    assert _rel(sk.lower_bound_, pp.lower_bound_) < 1e-6


@pytest.mark.parametrize("ct", TYPES)
def test_lower_bound_never_decreases(ct):
    x = _blobs(n=400, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(
            5, covariance_type=ct, tol=0, max_iter=60, random_state=0, init_params="random"
        ).fit(x)
    b = np.array(gm.lower_bounds_)
    assert len(b) == 60
    assert np.all(np.diff(b) >= -1e-10 * np.abs(b[1:])), np.diff(b).min()


def test_lower_bound_history_is_log_likelihood_before_each_m_step():
    """``lower_bounds_[i]`` is the mean log-likelihood at the parameters after i M-steps."""
    x = _blobs(n=300)
    init = _init(x, 3, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full = GaussianMixture(3, tol=0, max_iter=6, **init).fit(x)
        for i in (1, 3, 5):
            part = GaussianMixture(3, tol=0, max_iter=i, **init).fit(x)
            assert math.isclose(part.score(x), full.lower_bounds_[i], rel_tol=1e-12)


def test_chunked_equals_unchunked_and_float_input_types():
    x = _blobs(n=500)
    init = _init(x, 4, "full")
    a = GaussianMixture(4, tol=1e-8, max_iter=30, **init).fit(x)
    b = GaussianMixture(4, tol=1e-8, max_iter=30, chunk_size=128, **init).fit(torch.tensor(x))
    for name in ATTRS:
        got = torch.as_tensor(getattr(a, name))
        torch.testing.assert_close(got, getattr(b, name), rtol=1e-10, atol=1e-12)
    assert math.isclose(a.lower_bound_, b.lower_bound_, rel_tol=1e-12)


@pytest.mark.parametrize("ct", ["full", "diag"])
def test_integer_sample_weight_equals_repeated_rows(ct):
    x = _blobs(n=200)
    reps = np.random.RandomState(0).randint(0, 4, size=len(x))
    init = _init(x, 3, ct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = GaussianMixture(3, covariance_type=ct, tol=1e-9, max_iter=25, **init)
        a.fit(x, sample_weight=reps.astype(float))
        b = GaussianMixture(3, covariance_type=ct, tol=1e-9, max_iter=25, **init)
        b.fit(np.repeat(x, reps, axis=0))
    for name in ATTRS:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-11)
    assert math.isclose(a.lower_bound_, b.lower_bound_, rel_tol=1e-10)


def test_one_component_is_the_gaussian_mle():
    x = _blobs(n=300, k=1)
    with pytest.warns(ConvergenceWarning):  # tol=0 never converges
        gm = GaussianMixture(1, reg_covar=0.0, tol=0, max_iter=2).fit(x)
    np.testing.assert_allclose(gm.means_[0], x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(gm.covariances_[0], np.cov(x.T, bias=True), rtol=1e-10)
    assert gm.n_iter_ == 2


def test_bic_picks_the_true_number_of_components():
    x = _blobs(n=900, d=2, k=3, seed=4)
    bics = [GaussianMixture(k, random_state=0, n_init=2).fit(x).bic(x) for k in (1, 2, 3, 4, 5)]
    assert int(np.argmin(bics)) + 1 == 3


def test_sampling_moments_and_reproducibility():
    x = torch.as_tensor(_blobs(n=400, d=2, k=2))  # torch in: tensors out
    for ct in TYPES:
        gm = GaussianMixture(2, covariance_type=ct, random_state=0).fit(x)
        s, labels = gm.generate(
            40_000, generator=torch.Generator().manual_seed(0), return_labels=True
        )
        assert s.shape == (40_000, 2) and labels.shape == (40_000,)
        mean = (gm.weights_[:, None] * gm.means_).sum(0)
        cov_k = {
            "full": gm.covariances_,
            "tied": gm.covariances_.expand(2, 2, 2),
            "diag": torch.diag_embed(gm.covariances_),
            "spherical": gm.covariances_[:, None, None] * torch.eye(2, dtype=s.dtype),
        }[ct]
        second = (
            gm.weights_[:, None, None] * (cov_k + gm.means_[:, :, None] * gm.means_[:, None])
        ).sum(0)
        cov = second - mean[:, None] * mean[None]
        # Monte-Carlo tolerance: ~5 standard errors of a mean of 40k samples
        se = (torch.diagonal(cov).sqrt() / math.sqrt(40_000)) * 5
        assert torch.all((s.mean(0) - mean).abs() < se), ct
        torch.testing.assert_close(torch.cov(s.T), cov, rtol=0.05, atol=0.05 * cov.abs().max())
        again = gm.generate(40_000, generator=torch.Generator().manual_seed(0))
        assert torch.equal(s, again)


def test_save_load_round_trip(tmp_path):
    x = _blobs(n=200)
    gm = GaussianMixture(
        3, covariance_type="diag", random_state=0, means_init=_init(x, 3, "diag")["means_init"]
    ).fit(x)
    gm.save(tmp_path / "gm")
    back = probpath.load(tmp_path / "gm")
    assert isinstance(back, GaussianMixture)
    torch.testing.assert_close(back.score_samples(x), gm.score_samples(x))
    assert back.lower_bounds_ == gm.lower_bounds_ and back.n_iter_ == gm.n_iter_


def test_failed_cholesky_says_how_to_fix():
    x = np.repeat(np.random.RandomState(0).randn(3, 2), 20, axis=0)  # 3 distinct points
    gm = GaussianMixture(3, reg_covar=0.0, init_params="random_from_data", random_state=0)
    with pytest.raises(ValueError, match="increase reg_covar"):
        gm.fit(x)


def test_empty_component_is_reseeded_with_a_warning_and_no_nan():
    x = _blobs(n=300, d=2, k=2, seed=1)
    far = np.array([[1e3, 1e3], [2e3, -1e3]])  # no data near these means
    init = {
        "weights_init": [0.5, 0.25, 0.25],
        "means_init": np.vstack([x[:1], far]),
        "precisions_init": np.stack([np.eye(2)] * 3),
    }
    gm = GaussianMixture(3, tol=1e-6, max_iter=50, **init)
    with pytest.warns(UserWarning, match=r"component\(s\) \[1, 2\].*re-seeded"):
        gm.fit(x)
    for name in ATTRS:
        assert np.isfinite(getattr(gm, name)).all(), name
    assert np.isfinite(gm.score_samples(x)).all()


def test_convergence_warning_and_attributes():
    x = _blobs(n=200)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        gm = GaussianMixture(4, tol=0, max_iter=3, random_state=0).fit(x)
    assert gm.n_iter_ == 3 and not gm.converged_ and len(gm.lower_bounds_) == 3
    gm2 = GaussianMixture(4, tol=1e-3, max_iter=500, random_state=0).fit(x)
    assert gm2.converged_ and gm2.n_iter_ < 500


def test_n_init_keeps_the_best_restart(capsys):
    """``n_init`` keeps the restart with the highest lower bound, not the first or the last.

    Data: three tight clusters (sd 0.5, 100 points each) at -10, 0 and 10. A restart that
    seeds two means in one cluster ends in a bad local optimum (one component spans two
    clusters; mean log-likelihood ~ -2.88), the others in the good one, whose value is about
    ``-ln 3 - 1/2 ln(2 pi e 0.5^2) = -1.824``. With ``random_state=27`` the three restarts
    end bad, good, bad (read from the verbose log, printed to 8 digits), so neither "keep
    the first" nor "keep the last" passes.
    """
    rng = np.random.RandomState(0)
    x = np.concatenate([rng.randn(100, 1) * 0.5 + c for c in (-10.0, 0.0, 10.0)])
    kw = {"init_params": "random_from_data", "tol": 1e-8, "max_iter": 200, "verbose": 1}
    gm = GaussianMixture(3, n_init=3, random_state=27, **kw).fit(x)
    bounds = [float(b) for b in re.findall(r"lower bound ([-\d.e+]+)", capsys.readouterr().out)]
    assert len(bounds) == 3
    good = -math.log(3) - 0.5 * math.log(2 * math.pi * math.e * 0.25)
    assert bounds[0] < good - 0.5 and bounds[2] < good - 0.5 and abs(bounds[1] - good) < 0.05
    # the kept bound is the best restart's (to the 8 printed digits)
    assert math.isclose(gm.lower_bound_, max(bounds), rel_tol=1e-7)
    # and so are the kept parameters: one mean per cluster, within 5 standard errors
    # (0.5 / sqrt(100) = 0.05) of the cluster centres
    np.testing.assert_allclose(np.sort(gm.means_[:, 0]), [-10.0, 0.0, 10.0], atol=5 * 0.05)


def test_warm_start_continues_from_previous_fit():
    x = _blobs(n=300)
    init = _init(x, 3, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GaussianMixture(3, tol=0, max_iter=10, **init).fit(x)
        ws = GaussianMixture(3, tol=0, max_iter=5, warm_start=True, **init).fit(x)
        ws.fit(x)
    torch.testing.assert_close(ws.means_, ref.means_, rtol=1e-10, atol=1e-12)


def test_input_validation_messages():
    gm = GaussianMixture(2, random_state=0).fit(_blobs(n=100, d=2))
    with pytest.raises(ValueError, match="NaN"):
        gm.score_samples(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="5 features, but GaussianMixture is expecting 2"):
        gm.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixture(0).fit(_blobs(n=10))
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMixture(2, covariance_type="banana").fit(_blobs(n=10))
    with pytest.raises(ValueError, match="init_params"):
        GaussianMixture(2, init_params="banana").fit(_blobs(n=10))
    with pytest.raises(ValueError, match="'means' should have the shape"):
        GaussianMixture(2, means_init=[[0.0, 0.0]]).fit(_blobs(n=10, d=2))
    with pytest.raises(ValueError, match="sample_weight"):
        GaussianMixture(2).fit(_blobs(n=10), sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="n"):
        gm.sample(0)
    with pytest.raises(NotFittedError, match="not fitted"):
        GaussianMixture(2).score_samples(np.zeros((2, 2)))


def test_whitened_full_e_step_matches_sklearn_and_quadratic_features(monkeypatch):
    """Full covariances with d > 16 run the whitened E-step ``||x U_k - b_k||^2`` and the
    ``(d, n) @ (n, K d)`` second moments instead of the d(d+1)/2 quadratic features; both are
    the same float64 algebra as scikit-learn's, so they agree to round-off: eps = 2.2e-16
    accumulated over 10 iterations and amplified by the covariances' condition numbers
    (<= 2e3 here, ~500 samples per component in d = 20). Achieved: 1.2e-16 relative on the
    bound, <= 8.7e-13 on the parameters (precisions_cholesky_); the bounds below leave two
    orders of magnitude."""
    x = _blobs(n=1500, d=20, k=3, seed=4)
    init = _init(x, 3, "full")
    sk, pp = _fit_both(x, 3, "full", tol=0.0, max_iter=10, **init)
    assert pp._whitened()
    assert _rel(sk.lower_bound_, pp.lower_bound_) < 1e-13
    for name in ATTRS:
        want = getattr(sk, name)
        assert np.max(np.abs(getattr(pp, name) - want)) <= 1e-10 * np.max(np.abs(want)), name
    np.testing.assert_allclose(pp.score_samples(x), sk.score_samples(x), rtol=1e-11)
    np.testing.assert_allclose(pp.predict_proba(x), sk.predict_proba(x), rtol=0, atol=1e-11)
    monkeypatch.setattr(GaussianMixture, "_QUADRATIC_FEATURES_MAX_D", 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quad = GaussianMixture(3, covariance_type="full", tol=0.0, max_iter=10, **init).fit(x)
    assert not quad._whitened()
    assert _rel(quad.lower_bound_, pp.lower_bound_) < 1e-13  # achieved 2.3e-16
