"""What a saved estimator must hold, derived from its configuration before any tensor is read.

An estimator's ``model.safetensors`` holds its learned tensors (``means_``, ...) and
``config.json``'s ``"state"`` its learned plain values (``n_iter_``, ...). A registry maps
each estimator class to a function of its configuration and the number of features ``d``
(``state["n_features_in_"]``) that returns the exact tensor names and shapes it saves and the
allowed plain keys; :func:`expected_fitted` turns that into the header the file must have
(see :func:`probpath.core.serialization.load_tensors`). Shapes follow scikit-learn's
covariance conventions: per component ``full (d, d)``, ``diag (d,)``, ``spherical ()``, and
one shared ``tied (d, d)``.

An estimator class missing from the registry gets the generic rules of
:func:`check_plain_state` only ; adding a class is one entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from probpath.core.limits import check_count
from probpath.core.serialization import CheckpointError, TensorInfo

__all__ = ["FITTED_SPECS", "expected_fitted", "check_plain_state"]

Shapes = dict[str, tuple[int, ...]]
Spec = Callable[[Mapping[str, Any], int], tuple[Shapes, frozenset[str]]]

_EM_PLAIN = frozenset(
    {"n_features_in_", "n_steps_", "converged_", "n_iter_", "lower_bound_", "lower_bounds_"}
)
_GAUSSIAN_PLAIN = frozenset({"n_features_in_", "n_samples_fit_"})
_BGMM_PLAIN = frozenset(
    {
        "n_features_in_", "weight_concentration_prior_", "mean_precision_prior_",
        "degrees_of_freedom_prior_", "converged_", "n_iter_", "lower_bound_", "lower_bounds_",
    }
)  # fmt: skip
_COV = {"full": 2, "diag": 1, "spherical": 0, "tied": 2}  # trailing d-dimensions per type
_DTYPES = {"float64": "F64", "float32": "F32"}


def _cov(kind: str, k: int | None, d: int) -> tuple[int, ...]:
    """Shape of a covariance-like tensor: ``k`` components (None: a single Gaussian)."""
    if not isinstance(kind, str) or kind not in _COV:
        raise CheckpointError(f"config.json: unknown covariance_type {kind!r}")
    per = (d,) * _COV[kind]
    return per if k is None or kind == "tied" else (k, *per)


def _k(config: Mapping[str, Any]) -> int:
    k = config.get("n_components")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise CheckpointError(f"config.json: n_components must be a positive integer, got {k!r}")
    return k


def _gaussian(config, d):
    cov = _cov(config.get("covariance_type", "full"), None, d)
    shapes = {"mean_": (d,), "covariance_": cov, "precision_cholesky_": cov, "precision_": cov}
    return shapes, _GAUSSIAN_PLAIN


def _gmm(config, d):
    k, cov = _k(config), _cov(config.get("covariance_type", "full"), _k(config), d)
    shapes = {"center_": (d,), "means_": (k, d), "weights_": (k,)}
    shapes |= {name: cov for name in ("covariances_", "precisions_cholesky_", "precisions_")}
    return shapes, _EM_PLAIN


def _bgmm(config, d):
    kind = config.get("covariance_type", "full")
    k, cov = _k(config), _cov(kind, _k(config), d)
    process = config.get("weight_concentration_prior_type") == "dirichlet_process"
    shapes = {
        "mean_prior_": (d,), "covariance_prior_": _cov(kind, None, d),
        "weight_concentration_": (2, k) if process else (k,), "mean_precision_": (k,),
        "means_": (k, d), "degrees_of_freedom_": () if kind == "tied" else (k,),
        "covariances_": cov, "precisions_cholesky_": cov, "precisions_": cov, "weights_": (k,),
    }  # fmt: skip
    return shapes, _BGMM_PLAIN


def _discrete_mixture(param: str) -> Spec:
    def spec(config, d):
        k = _k(config)
        return {param: (k, d), "weights_": (k,)}, _EM_PLAIN

    return spec


FITTED_SPECS: dict[str, Spec] = {
    "GaussianMLE": _gaussian,
    "GaussianScoreMatching": _gaussian,
    "GaussianMixture": _gmm,
    "BayesianGaussianMixture": _bgmm,
    "BernoulliMixture": _discrete_mixture("probs_"),
    "PoissonMixture": _discrete_mixture("rates_"),
}
"""Estimator class name -> ``spec(config, d) -> (tensor shapes, allowed plain keys)``."""


def check_plain_state(cls: type, state: Any, source: str) -> dict[str, Any]:
    """The generic rules for ``config.json``'s ``"state"``: names and values of plain data.

    Every key is a learned-attribute name (``lower_case_`` ending in ``_``, not private, not
    a dunder, not a name the class already defines — no method or property is replaced);
    every value is a JSON number, boolean, string or a list of those.

    Raises:
        CheckpointError: naming ``source`` and the key.
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: 'state' must be an object")
    for key, value in state.items():
        ok_name = (
            isinstance(key, str)
            and key.isidentifier()
            and key.endswith("_")
            and not key.startswith("_")
            and not hasattr(cls, key)
        )
        if not ok_name:
            raise CheckpointError(
                f"{source}: 'state' key {key!r} is not a learned attribute of "
                f"{cls.__name__}; the file was not written by probpath"
            )
        items = value if isinstance(value, list) else [value]
        if not all(v is None or isinstance(v, bool | int | float | str) for v in items):
            raise CheckpointError(f"{source}: 'state' value of {key!r} is not plain data")
    return state


def expected_fitted(
    cls: type, config: Mapping[str, Any], state: Mapping[str, Any], max_params: int, source: str
) -> dict[str, TensorInfo] | None:
    """The safetensors header an estimator's weights must have, or ``None`` if unregistered.

    Args:
        cls: the estimator class; config: its constructor arguments; state: the saved plain
            values (already through :func:`check_plain_state`).
        max_params: bound on the total number of tensor elements.
        source: the config.json path, for messages.

    Raises:
        CheckpointError: missing / extra plain keys, a bad ``n_features_in_``.
        ResourceLimitError: the implied tensors exceed ``max_params`` elements.
    """
    spec = FITTED_SPECS.get(cls.__name__)
    if spec is None:
        return None
    d = state.get("n_features_in_")
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise CheckpointError(f"{source}: 'state' needs n_features_in_ >= 1, got {d!r}")
    check_count(d, max_params, f"{source}: n_features_in_", "raise --max-params if trusted")
    try:
        shapes, plain = spec(config, d)
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError) as exc:  # a config value of the wrong type
        raise CheckpointError(f"{source}: 'config' does not fit {cls.__name__} ({exc})") from None
    if set(state) != plain:
        raise CheckpointError(
            f"{source}: 'state' keys do not match {cls.__name__}: missing "
            f"{sorted(plain - set(state))}, unexpected {sorted(set(state) - plain)}"
        )
    total = sum(math.prod(shape) for shape in shapes.values())
    check_count(
        total, max_params, f"{cls.__name__} in {source}: tensor elements", "raise --max-params"
    )
    dtype = _DTYPES.get(str(config.get("dtype", "float64")), "F64")
    return {name: TensorInfo(dtype, shape) for name, shape in shapes.items()}
