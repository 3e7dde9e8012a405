"""scikit-learn's own mixture test suite, run against probpath's estimators (issue #12).

Nothing is vendored: the installed modules ``sklearn.mixture.tests.test_gaussian_mixture``,
``test_bayesian_mixture`` and ``test_mixture`` are imported, the estimator classes in their
module globals are swapped for probpath's (an autouse fixture; no assertion or tolerance is
touched) and their test functions are collected here under a ``sk_`` prefix.

Tests that exercise a private scikit-learn function (the covariance estimators, the log
normalisers, the array-API dispatch) rather than the estimator are listed in
``NOT_APPLICABLE`` with the reason; every other test runs. ``test_mixture.py`` builds its
estimator instances at import time (scikit-learn's classes), so its two functions are
re-parametrised here with probpath's instances, the function bodies unchanged.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from probpath.likelihood import BayesianGaussianMixture, GaussianMixture

pytest.importorskip("sklearn", minversion="1.9")

_MODULES = {
    name: importlib.import_module(f"sklearn.mixture.tests.{name}")
    for name in ("test_gaussian_mixture", "test_bayesian_mixture", "test_mixture")
}
_SWAP = {"GaussianMixture": GaussianMixture, "BayesianGaussianMixture": BayesianGaussianMixture}

_PRIVATE = "calls a private scikit-learn function, not the estimator"
NOT_APPLICABLE = {
    "test_suffstat_sk_full": f"{_PRIVATE} (_estimate_gaussian_covariances_full)",
    "test_suffstat_sk_tied": f"{_PRIVATE} (_estimate_gaussian_covariances_tied)",
    "test_suffstat_sk_diag": f"{_PRIVATE} (_estimate_gaussian_covariances_diag)",
    "test_gaussian_suffstat_sk_spherical": f"{_PRIVATE} (_estimate_gaussian_covariances_*)",
    "test_compute_log_det_cholesky": f"{_PRIVATE} (_compute_log_det_cholesky)",
    "test_gaussian_mixture_log_probabilities": f"{_PRIVATE} (_estimate_log_gaussian_prob)",
    "test_gaussian_mixture_estimate_log_prob_resp": (
        "calls the private methods _estimate_log_prob_resp / _estimate_weighted_log_prob"
    ),
    "test_log_dirichlet_norm": f"{_PRIVATE} (_log_dirichlet_norm)",
    "test_log_wishart_norm": f"{_PRIVATE} (_log_wishart_norm)",
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters": (
        "mocks scikit-learn's private _estimate_gaussian_parameters"
    ),
    "test_gaussian_mixture_precisions_init": (
        "drives BaseMixture's private _set_parameters / _initialize with scikit-learn's "
        "internal signatures (tuples of its arrays)"
    ),
    "test_compare_covar_type": (
        "drives BaseMixture's private _check_parameters / _initialize_parameters with "
        "scikit-learn's internal signatures"
    ),
    "test_gaussian_mixture_array_api_compliance": (
        "scikit-learn's array-API dispatch (probpath takes torch tensors directly)"
    ),
    "test_gaussian_mixture_raises_where_array_api_not_implemented": (
        "scikit-learn's array-API dispatch (probpath takes torch tensors directly)"
    ),
}

# Applicable tests that do not pass, with the reason (the issue allows at most three).
KNOWN_FAILURES: dict[str, str] = {
    "test_gaussian_mixture_setting_best_params": (
        "scikit-learn's issue #18216 data with reg_covar=0: after one EM step two spherical "
        "components each hold a single sample, whose variance is exactly 0. probpath computes "
        "it as 0.0 and raises the ill-defined-covariance error that test_regularisation asks "
        "for on collapsed components; scikit-learn's rounding leaves +3.6e-16 and +9.5e-16 "
        "and carries on with precisions ~1e15. Raising is the mathematically right answer"
    ),
}


@pytest.fixture(autouse=True)
def _swap_estimators(monkeypatch):
    for module in _MODULES.values():
        for name, cls in _SWAP.items():
            if hasattr(module, name):
                monkeypatch.setattr(module, name, cls)


@pytest.fixture(params=[np.float64, np.float32], ids=["float64", "float32"])
def global_dtype(request):
    """scikit-learn's conftest fixture; both float dtypes run (its CI opts in to float32)."""
    return request.param


@pytest.fixture
def global_random_seed():
    """scikit-learn's conftest fixture at its default value (42)."""
    return 42


def _collect() -> None:
    for mod_name, module in _MODULES.items():
        for name, fn in vars(module).items():
            if not name.startswith("test_") or not callable(fn) or name in NOT_APPLICABLE:
                continue
            if mod_name == "test_mixture":
                fn = pytest.mark.parametrize(
                    "estimator", [GaussianMixture(), BayesianGaussianMixture()], ids=["gm", "bgm"]
                )(_unwrap_parametrize(fn))
            if name in KNOWN_FAILURES:
                fn = pytest.mark.xfail(reason=KNOWN_FAILURES[name], strict=True)(fn)
            short = f"{mod_name.removeprefix('test_')}__{name.removeprefix('test_')}"
            globals()[f"test_sk_{short}"] = fn


def _unwrap_parametrize(fn):
    """A copy of ``fn`` without its ``estimator`` parametrisation (scikit-learn instances)."""
    import functools

    @functools.wraps(fn)
    def wrapper(estimator):
        return fn(estimator)

    wrapper.pytestmark = [
        m for m in getattr(fn, "pytestmark", []) if "estimator" not in str(m.args[:1])
    ]
    del wrapper.__wrapped__
    return wrapper


_collect()
