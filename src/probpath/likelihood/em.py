"""The general EM engine (survey §1.1.3–§1.1.4): one loop, many latent-variable models.

The survey writes the log-likelihood of incomplete data ``X`` with latent ``Z`` as

* Eq. (8):  ``ln p(X|θ) = ln Σ_Z p(X, Z|θ)``;
* Eq. (9):  ``Q(θ, θ_old) = Σ_Z p(Z|X, θ_old) ln p(X, Z|θ)`` (maximised by the M-step);
* Eq. (10): ``ln p(X|θ) = L(q, θ) + KL(q || p(Z|X, θ))`` for any distribution ``q(Z)``;
* Eq. (11): ``L(q, θ) = Σ_Z q(Z) ln [p(X, Z|θ) / q(Z)]`` (the lower bound);
* Eq. (12): ``KL(q || p) = -Σ_Z q(Z) ln [p(Z|X, θ) / q(Z)]``.

The E-step maximises ``L`` over ``q`` (``q = p(Z|X, θ_old)``, so ``KL = 0``), the M-step
maximises ``L`` (equivalently ``Q``) over ``θ``; the lower bound never decreases.

:class:`EMEstimator` is the template (the scikit-learn ``BaseMixture`` loop): it owns
restarts (``n_init``), convergence on the change of the per-sample lower bound (``tol``),
``max_iter``, ``warm_start``, verbose printing, the :class:`ConvergenceWarning`, and the
fitted attributes ``converged_``, ``n_iter_``, ``lower_bound_`` and ``lower_bounds_``.
A subclass implements a handful of hooks:

* ``_initialize(x, w, rng)`` — set initial parameters (``rng`` is a NumPy ``RandomState``);
* ``_e_step(x, w) -> (log_prob_norm, q)`` — per-sample mean of ``ln p(x|θ)`` and the
  E-step's ``q``: log-responsibilities ``(N, K)``, or whatever summary of them the M-step
  needs (the fused mixture pass hands over their sufficient statistics);
* ``_m_step(x, w, q)`` — maximise ``Q`` (Eq. 9) given ``q``;
* ``_compute_lower_bound(q, log_prob_norm, w) -> float`` — the recorded objective
  (default: ``log_prob_norm``, which equals ``L(q, θ_old)`` after an exact E-step; the
  variational mixture returns the ELBO);
* ``_get_parameters() -> dict`` / ``_set_parameters(dict)`` — snapshot of the fitted state.

``_iterate(x, w) -> float`` runs the three hooks; only stepwise EM
(:mod:`probpath.likelihood._stepwise`) replaces it, by an epoch of mini-batch steps.
Variational models reuse the loop unchanged: their "E-step" updates ``q`` and
``_compute_lower_bound`` returns the ELBO (Eq. 14).

The free functions :func:`evidence_lower_bound`, :func:`kl_to_posterior` and
:func:`decompose_log_likelihood` compute Eqs. (10)–(12) for a discrete latent variable
from the joint ``ln p(x_n, z_n = k | θ)``; the tests use them to check Eq. (10).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
from sklearn.utils import check_random_state

from probpath.core.model import Estimator
from probpath.core.validation import check_positive_int, check_tensor

__all__ = [
    "ConvergenceWarning",
    "EMEstimator",
    "LogLikelihoodDecomposition",
    "evidence_lower_bound",
    "kl_to_posterior",
    "decompose_log_likelihood",
    "resolve_dtype",
]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


# EM (or VI) stopped at ``max_iter`` before the lower bound changed by less than ``tol``
ConvergenceWarning = _SklearnConvergenceWarning


def resolve_dtype(dtype: Any) -> tuple[str, torch.dtype]:
    """Return ``(name, torch dtype)`` for ``"float64"`` / ``"float32"`` or a torch dtype.

    Estimators store the name in their JSON config; both spellings are accepted.
    """
    if isinstance(dtype, torch.dtype):
        for name, dt in _DTYPES.items():
            if dt == dtype:
                return name, dt
    if isinstance(dtype, str) and dtype.replace("torch.", "") in _DTYPES:
        name = dtype.replace("torch.", "")
        return name, _DTYPES[name]
    raise ValueError(f"dtype must be 'float64' or 'float32' (or the torch dtype), got {dtype!r}")


def _xlogx_safe(q: torch.Tensor) -> torch.Tensor:
    """``q ln q`` with the convention ``0 ln 0 = 0``."""
    return torch.where(q > 0, q * torch.log(q.clamp_min(torch.finfo(q.dtype).tiny)), 0.0)


def evidence_lower_bound(log_joint: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Lower bound ``L(q, θ)`` of Eq. (11) for a discrete latent variable.

    Args:
        log_joint: ``ln p(x_n, z_n = k | θ)``, shape ``(N, K)``.
        q: ``q(z_n = k)``, shape ``(N, K)``, rows summing to one.

    Returns:
        Per-sample bound, shape ``(N,)``: ``Σ_k q_nk (ln p(x_n, k|θ) - ln q_nk)``
        (Survey §1.1.4, Eq. 11; ``0 ln 0 = 0``).
    """
    joint_part = torch.where(q > 0, q * log_joint, 0.0).sum(-1)
    return joint_part - _xlogx_safe(q).sum(-1)


def kl_to_posterior(log_joint: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``KL(q || p(z|x, θ))`` of Eq. (12), per sample, shape ``(N,)``.

    Args:
        log_joint: ``ln p(x_n, z_n = k | θ)``, shape ``(N, K)``.
        q: ``q(z_n = k)``, shape ``(N, K)``.
    """
    log_post = log_joint - torch.logsumexp(log_joint, dim=-1, keepdim=True)
    return _xlogx_safe(q).sum(-1) - torch.where(q > 0, q * log_post, 0.0).sum(-1)


@dataclass(frozen=True)
class LogLikelihoodDecomposition:
    """The three terms of Eq. (10), summed over samples (``log_likelihood = bound + kl``)."""

    log_likelihood: torch.Tensor
    lower_bound: torch.Tensor
    kl: torch.Tensor


def decompose_log_likelihood(
    log_joint: torch.Tensor, q: torch.Tensor
) -> LogLikelihoodDecomposition:
    """Evaluate Eq. (10): ``ln p(X|θ) = L(q, θ) + KL(q || p(Z|X, θ))``.

    Args:
        log_joint: ``ln p(x_n, z_n = k | θ)``, shape ``(N, K)``.
        q: any distribution over ``k`` per sample, shape ``(N, K)``.

    Example:
        >>> lj = torch.log(torch.tensor([[0.2, 0.3]], dtype=torch.float64))
        >>> d = decompose_log_likelihood(lj, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
        >>> bool(torch.isclose(d.log_likelihood, d.lower_bound + d.kl))
        True
    """
    return LogLikelihoodDecomposition(
        log_likelihood=torch.logsumexp(log_joint, dim=-1).sum(),
        lower_bound=evidence_lower_bound(log_joint, q).sum(),
        kl=kl_to_posterior(log_joint, q).sum(),
    )


class EMEstimator(Estimator):
    """Template of an EM (or variational EM) estimator: the loop lives here, once.

    Subclasses call ``super().__init__(...)`` with the loop settings below and implement
    the hooks listed in the module docstring. ``fit`` runs ``n_init`` restarts of at most
    ``max_iter`` iterations each and keeps the run with the largest final lower bound.

    Args:
        tol: convergence threshold on the change of the per-sample lower bound between two
            iterations (``|ΔL| < tol`` stops; ``tol = 0`` runs exactly ``max_iter``).
        max_iter: maximum number of EM iterations per restart (0: only initialise).
        n_init: number of restarts; the best lower bound wins.
        random_state: ``None``, an int or a NumPy ``RandomState`` (scikit-learn's
            ``check_random_state``), handed to ``_initialize``.
        warm_start: if fitted already, continue from the current parameters (one restart).
        verbose: 0 silent, 1 prints restarts, 2 also prints the bound every
            ``verbose_interval`` iterations.
        verbose_interval: iterations between two verbose lines.

    Attributes:
        converged_: whether the best restart met ``tol``.
        n_iter_: iterations of the best restart.
        lower_bound_: final per-sample lower bound of the best restart.
        lower_bounds_: its history (one value per iteration).
    """

    def __init__(
        self,
        *,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        random_state: int | None = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
    ):
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    # ----------------------------------------------------------------- hooks (override)
    def _prepare(self, x, sample_weight) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validate ``x`` (and ``sample_weight``) and convert them; override for dtype/device.

        Overrides also record ``_numpy_io`` (fitted arrays are returned as NumPy) and the
        computation ``_device``.
        """
        x = check_tensor(x, "x", min_ndim=2)
        return x, self._check_sample_weight(x, sample_weight)

    @staticmethod
    def _check_sample_weight(x: torch.Tensor, sample_weight) -> torch.Tensor | None:
        """``None`` or a validated ``(N,)`` tensor of non-negative weights with a positive sum."""
        if sample_weight is None:
            return None
        w = check_tensor(sample_weight, "sample_weight", ndim=1, dtype=x.dtype, device=x.device)
        if w.shape[0] != x.shape[0]:
            raise ValueError(
                f"sample_weight has {w.shape[0]} entries but x has {x.shape[0]} samples; "
                "pass one weight per sample"
            )
        if bool((w < 0).any()):
            raise ValueError("sample_weight must be non-negative; drop or fix negative weights")
        if not bool(w.sum() > 0):
            raise ValueError(
                "sample_weight must not be all zero (the weights sum to zero); give some "
                "samples a positive weight"
            )
        return w

    def _check_parameters(self, x: torch.Tensor) -> None:
        """Check constructor arguments against the data (override to add checks)."""

    def _initialize(self, x: torch.Tensor, w: torch.Tensor | None, rng: np.random.RandomState):
        raise NotImplementedError(f"{type(self).__name__} must implement _initialize()")

    def _e_step(self, x: torch.Tensor, w: torch.Tensor | None) -> tuple[float, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement _e_step()")

    def _m_step(self, x: torch.Tensor, w: torch.Tensor | None, log_resp: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _m_step()")

    def _compute_lower_bound(
        self, log_resp: Any, log_prob_norm: float, w: torch.Tensor | None = None
    ) -> float:
        """Default: ``L(q, θ_old) = mean ln p(x|θ_old)`` after an exact E-step (Eq. 10)."""
        return float(log_prob_norm)

    def _iterate(self, x: torch.Tensor, w: torch.Tensor | None) -> float:
        """One EM iteration; returns the per-sample lower bound to record."""
        log_prob_norm, log_resp = self._e_step(x, w)
        self._m_step(x, w, log_resp)
        return self._compute_lower_bound(log_resp, log_prob_norm, w)

    def _get_parameters(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement _get_parameters()")

    def _set_parameters(self, params: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _set_parameters()")

    # ----------------------------------------------------------------------- the loop
    def _check_loop_settings(self) -> None:
        if not (isinstance(self.tol, int | float) and self.tol >= 0):
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")
        if (
            isinstance(self.max_iter, bool)
            or not isinstance(self.max_iter, int)
            or self.max_iter < 0
        ):
            raise ValueError(f"max_iter must be a non-negative integer, got {self.max_iter!r}")
        check_positive_int(self.n_init, "n_init")
        check_positive_int(self.verbose_interval, "verbose_interval")

    def fit(self, x, y=None, sample_weight=None):
        """Fit by EM (``y`` is ignored; it is there for scikit-learn pipelines).

        Args:
            x: data, shape ``(N, ...)`` (NumPy or torch).
            sample_weight: optional non-negative weights, shape ``(N,)``.

        Returns:
            ``self``.
        """
        self._check_loop_settings()
        x, w = self._prepare(x, sample_weight)
        with self._torch_state(keep=True):
            self._check_parameters(x)
            self._fit(x, w)
        return self

    def _fit(self, x: torch.Tensor, w: torch.Tensor | None) -> None:
        """The restarts and the iterations, on validated tensors."""
        do_init = not (self.warm_start and getattr(self, "converged_", None) is not None)
        n_init = self.n_init if do_init else 1
        rng = check_random_state(self.random_state)
        best_bound, best_params, best_n_iter, best_history = -math.inf, None, 0, []
        best_converged = False
        for init in range(n_init):
            if self.verbose:
                print(f"Initialization {init}")
            tic = time.perf_counter()
            if do_init:
                self._initialize(x, w, rng)
            bound = -math.inf if do_init else float(self.lower_bound_)
            history: list[float] = []
            converged, n_iter = False, 0
            for n_iter in range(1, self.max_iter + 1):
                previous = bound
                bound = self._iterate(x, w)
                history.append(bound)
                change = bound - previous
                if self.verbose >= 2 and n_iter % self.verbose_interval == 0:
                    print(
                        f"  Iteration {n_iter}\t time {time.perf_counter() - tic:.3f}s\t "
                        f"change {change:.6g}\t lower bound {bound:.8g}"
                    )
                if abs(change) < self.tol:
                    converged = True
                    break
            if self.max_iter > 0 and not math.isfinite(bound):
                raise FloatingPointError(
                    f"the lower bound became {bound} at iteration {n_iter}; decrease "
                    "n_components, increase reg_covar, or scale the data"
                )
            if self.verbose:
                print(
                    f"Initialization {init} {'converged' if converged else 'did not converge'}"
                    f": lower bound {bound:.8g}, {n_iter} iterations"
                )
            if best_params is None or bound > best_bound:
                best_bound, best_params = bound, self._get_parameters()
                best_n_iter, best_history, best_converged = n_iter, history, converged
        if not best_converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data. "
                f"({type(self).__name__}: max_iter={self.max_iter}, tol={self.tol})",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._set_parameters(best_params)
        self.converged_ = bool(best_converged)
        self.n_iter_ = int(best_n_iter)
        self.lower_bound_ = float(best_bound)
        self.lower_bounds_ = [float(b) for b in best_history]
        self._after_fit(x)

    def _after_fit(self, x: torch.Tensor) -> None:
        """Called with the best parameters set (e.g. to record ``labels_``)."""
