"""Finite mixtures fitted by EM: the family-independent base (Survey §1.1.2, Eqs. 8–11).

``p(x | θ) = Σ_k π_k p(x | θ_k)``. The E-step computes responsibilities
``γ_nk = p(z_n = k | x_n, θ_old)`` in the log domain (``logsumexp``); the M-step sets
``π_k = N_k / N`` and maximises each component's responsibility-weighted log-likelihood.

:class:`MixtureEM` is the family-independent part, built on the EM template
:class:`~probpath.likelihood.em.EMEstimator`. It fuses the E-step and the accumulation of
*additive sufficient statistics* in one pass over the data, chunk by chunk, so that

* ``N`` need not fit in memory at once (``chunk_size``),
* ``sample_weight`` just multiplies the responsibilities,
* stepwise (mini-batch) EM for streams is a running average of the statistics
  (``batch_size`` in ``fit``, or ``partial_fit``; Cappé & Moulines 2009, Liang & Klein 2009),
* the same code runs on any torch device.

**Plugging in your own component family** — subclass :class:`MixtureEM` and implement:

* ``_component_log_prob(f) -> (n, K)``: ``ln p(x_n | θ_k)`` from ``f = self._features(x)``
  (by default ``f`` is ``x`` itself);
* ``_sufficient_statistics(f, resp) -> dict[str, Tensor]``: sums over samples of
  ``resp``-weighted functions of ``x`` (``resp`` already includes sample weights;
  :func:`responsibility_sums` computes ``resp^T @ g(x)`` fast);
* ``_update_components(stats, nk)``: the weighted M-step from those sums;
* ``_sample_components(labels, generator)``, ``_n_component_parameters()``, and
  ``_component_parameters()`` (a dict of the fitted tensors, for restarts).

``tests/likelihood/test_mixture_custom.py`` does this for a mixture of exponentials in
25 lines. :class:`~probpath.likelihood.gaussian_mixture.GaussianMixture` and
:mod:`probpath.likelihood.families` (Bernoulli, Poisson) are written the same way.

The EM template's hooks carry the fused pass: ``_e_step`` returns the per-sample lower bound
and the E-step's responsibilities *summarised as sufficient statistics* ``(stats, N_k)``,
``_m_step`` maximises ``Q`` from them; stepwise EM (:mod:`probpath.likelihood._stepwise`)
replaces the iteration by an epoch of mini-batch steps.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from probpath.core.model import Capabilities
from probpath.core.validation import check_choice, check_positive_int
from probpath.likelihood._mixture_api import MixtureAPI
from probpath.likelihood._mixture_tools import (
    INIT_PARAMS,
    check_array_parameter,
    initial_responsibilities,
)
from probpath.likelihood._stepwise import StepwiseEM
from probpath.likelihood.em import EMEstimator

__all__ = ["MixtureEM"]


class MixtureEM(StepwiseEM, MixtureAPI, EMEstimator):
    """A finite mixture fitted by (chunked, optionally stepwise) EM; family-independent.

    Args:
        n_components: number of mixture components ``K``.
        tol, max_iter, n_init, random_state, warm_start, verbose, verbose_interval: the EM
            loop (see :class:`~probpath.likelihood.em.EMEstimator`); ``tol`` applies to
            the per-sample lower bound.
        init_params: "kmeans", "k-means++", "random" or "random_from_data" (scikit-learn's
            initial responsibilities; the k-means ones use scikit-learn on the CPU).
        weights_init: optional initial mixture weights ``(K,)``.
        chunk_size: rows per chunk of the E-step / statistics pass (``None``: automatic,
            about 2^23 numbers of work per chunk; features are cached across iterations
            when they take at most 512 MiB).
        batch_size: ``None`` for batch EM; an int runs *stepwise EM* in ``fit``: each
            iteration is one shuffled pass of mini-batches of this size, each followed by
            an M-step on running statistics ``s <- (1 - η_t) s + η_t s_batch`` with
            ``η_t = (t + 2)^(-stepwise_decay)``.
        stepwise_decay: the exponent in ``(0.5, 1]`` of the stepwise step size.
        device: torch device of the computations ("cpu", "cuda", ...); ``None`` (default):
            the input tensor's device, the CPU for NumPy input.
        dtype: "float64" or "float32"; ``None`` (default): float32 input stays float32,
            anything else is float64 (scikit-learn's rule).

    Attributes:
        weights_: ``(K,)`` mixture weights ``π``.
        n_features_in_: number of features ``d``.
        converged_, n_iter_, lower_bound_, lower_bounds_: see the EM template.
    """

    capabilities = Capabilities(
        route="likelihood", section="§1.1.2", exact_log_prob=True, estimator=True
    )

    def __init__(
        self,
        n_components: int = 1,
        *,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: list[float] | None = None,
        random_state: int | None = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        chunk_size: int | None = None,
        batch_size: int | None = None,
        stepwise_decay: float = 0.7,
        device: str | None = None,
        dtype: str | None = None,
    ):
        super().__init__(
            tol=tol,
            max_iter=max_iter,
            n_init=n_init,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
        )
        self.n_components = n_components
        self.init_params = init_params
        self.weights_init = weights_init
        self.chunk_size = chunk_size
        self.batch_size = batch_size
        self.stepwise_decay = stepwise_decay
        self.device = device
        self.dtype = dtype

    # ======================================================== family hooks (override)
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample features shared by the E-step and the statistics (default: ``x``)."""
        return x

    def _component_log_prob(self, f: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _component_log_prob()")

    def _sufficient_statistics(self, f: torch.Tensor, resp: torch.Tensor) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement _sufficient_statistics()")

    def _update_components(self, stats: dict, nk: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _update_components()")

    def _component_parameters(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement _component_parameters()")

    def _sample_components(self, labels: torch.Tensor, generator) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _sample_components()")

    def _n_component_parameters(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement _n_component_parameters()")

    def _reseed_components(self, empty: list[int], points: torch.Tensor) -> None:
        """Re-seed the empty components ``empty`` at ``points`` (``(len(empty), d)``)."""
        raise RuntimeError(
            f"component(s) {empty} of {type(self).__name__} received no responsibility; "
            "decrease n_components, or define _reseed_components to re-seed them"
        )

    def _initialize_extra(self, x: torch.Tensor, w: torch.Tensor | None) -> None:
        """Called at the start of each initialisation (e.g. to fix a reference frame)."""

    def _all_parameters_given(self) -> bool:
        """Whether user-given initial parameters make the initial responsibilities moot."""
        return False

    def _apply_initial_parameters(self) -> None:
        """Overwrite initialised parameters with user-given ones (``weights_init`` here)."""
        if self.weights_init is not None:
            self.weights_ = self._as_param(self.weights_init, "weights", (self.n_components,))

    def _update_weights(self, nk: torch.Tensor) -> torch.Tensor:
        """M-step of ``π`` (maximum likelihood: ``N_k / N``)."""
        return nk / nk.sum()

    def _log_prior(self) -> float:
        """``ln p(θ)`` up to a constant (MAP-EM); 0 for maximum likelihood."""
        return 0.0

    # ================================================================== utilities
    def _as_param(self, value, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        arr = check_array_parameter(value, name, shape)
        return torch.as_tensor(arr).to(dtype=self._dtype, device=self._device)

    def _check_parameters(self, x: torch.Tensor) -> None:
        check_positive_int(self.n_components, "n_components")
        check_choice(self.init_params, "init_params", INIT_PARAMS)
        if x.shape[0] < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {x.shape[0]}; pass more samples or "
                "decrease n_components"
            )
        if self.chunk_size is not None:
            check_positive_int(self.chunk_size, "chunk_size")
        if self.batch_size is not None:
            check_positive_int(self.batch_size, "batch_size")
        if not 0.5 < float(self.stepwise_decay) <= 1.0:
            raise ValueError(f"stepwise_decay must be in (0.5, 1], got {self.stepwise_decay}")

    def _rows_per_chunk(self, width: int) -> int:
        if self.chunk_size is not None:
            return int(self.chunk_size)
        return max(1024, (1 << 23) // max(1, width + self.n_components))

    # ============================================================ E-step and passes
    def _log_joint(self, f: torch.Tensor) -> torch.Tensor:
        """``ln π_k + ln p(x_n | θ_k)``, shape ``(n, K)``."""
        return self._component_log_prob(f) + torch.log(self.weights_)

    def _log_joint_t(self, f: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The transpose of :meth:`_log_joint` written into ``out``, a contiguous ``(K, n)``
        tensor (the fit's E-step layout: reductions over ``K`` run along long rows)."""
        return out.copy_(self._log_joint(f).T)

    def _workspace(self, shape: tuple[int, int], like: torch.Tensor, slot: int) -> torch.Tensor:
        """A reused contiguous buffer of ``shape`` (one per ``slot``) for the E-step.

        Allocating a fresh ``K x n`` array per chunk and iteration costs more than the
        arithmetic on it (the operating system zero-fills new pages on first touch); the
        buffers live for one ``fit``.
        """
        numel = shape[0] * shape[1]
        buffers = vars(self).setdefault("_buffers", {})
        buf = buffers.get(slot)
        if (
            buf is None
            or buf.numel() < numel
            or buf.dtype != like.dtype
            or buf.device != like.device
        ):
            buf = buffers[slot] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel].view(shape)

    def _chunks(self, x: torch.Tensor, cache: bool = False):
        """Yield ``(start, features)`` chunk by chunk; with ``cache``, features are kept for
        the next iterations of the same ``fit`` when they take at most ``_CACHE_BYTES``."""
        if cache and self._feature_cache is not None:
            yield from self._feature_cache
            return
        width = self._features(x[:1]).shape[1]
        rows = self._rows_per_chunk(width)
        keep = cache and x.shape[0] * width * x.element_size() <= self._CACHE_BYTES
        kept = []
        for start in range(0, x.shape[0], rows):
            item = (start, self._features(x[start : start + rows]))
            if keep:
                kept.append(item)
            yield item
        if keep:
            self._feature_cache = kept

    _CACHE_BYTES = 512 * 2**20
    _feature_cache: list | None = None

    def _pass(self, x: torch.Tensor, w: torch.Tensor | None, cache: bool = False):
        """One E-step over ``x`` in chunks, accumulating the M-step statistics.

        The log-domain E-step in the ``(K, n)`` layout, in place: with ``ℓ_kn = ln π_k +
        ln p(x_n|θ_k)`` and ``m_n = max_k ℓ_kn``, ``e_kn = exp(ℓ_kn - m_n)``,
        ``s_n = Σ_k e_kn``, ``γ_kn = e_kn / s_n`` and ``ln p(x_n|θ) = m_n + ln s_n``: one
        ``exp`` per entry, and every reduction over ``K`` runs along contiguous rows of
        length ``n`` (a row-wise softmax over ``K = 8`` columns is ~3x slower on a CPU).

        Returns:
            ``(stats, nk, log_lik_sum, total_weight)``.
        """
        stats: dict[str, torch.Tensor] = {}
        nk = None
        ll = x.new_zeros(())
        k = self.n_components
        for start, f in self._chunks(x, cache):
            n = f.shape[0]
            # (K, n), overwritten with the responsibilities
            resp_t = self._log_joint_t(f, out=self._workspace((k, n), f, 0))
            top = torch.amax(resp_t, 0, out=self._workspace((1, n), f, 1)[0])
            resp_t.sub_(top).exp_()
            total = torch.sum(resp_t, 0, out=self._workspace((1, n), f, 2)[0])
            resp_t.div_(total)
            lse = top.add_(total.log_())
            if w is not None:
                wc = w[start : start + f.shape[0]]
                resp_t.mul_(wc)
                ll = ll + (lse * wc).sum()
            else:
                ll = ll + lse.sum()
            for key, value in self._sufficient_statistics(f, resp_t.T).items():
                stats[key] = stats[key].add_(value) if key in stats else value
            nk = resp_t.sum(1) if nk is None else nk.add_(resp_t.sum(1))
        total = w.sum() if w is not None else x.new_tensor(float(x.shape[0]))
        return stats, nk, ll, total

    def _m_step_from_statistics(self, stats, nk, x) -> None:
        tiny = 10 * torch.finfo(nk.dtype).eps * float(nk.sum())
        empty = torch.nonzero(nk <= tiny).reshape(-1).tolist()
        # keep the update well defined for empty components; they are re-seeded below
        self._empty_components = empty
        self._update_components(stats, torch.where(nk <= tiny, torch.ones_like(nk), nk))
        self._empty_components = []
        weights = self._update_weights(nk)
        if empty:  # re-seed at the samples the current model explains worst
            worst = torch.argsort(self._chunked(x, lambda lj: torch.logsumexp(lj, dim=1)))
            points = x[worst[: len(empty)]]
            self._reseed_components(empty, points)
            weights = weights.clone()
            weights[empty] = 1.0 / max(float(nk.sum()), 1.0)
            weights = weights / weights.sum()
            warnings.warn(
                f"{type(self).__name__}: component(s) {empty} received no responsibility and "
                "were re-seeded at the worst-explained data points; consider decreasing "
                "n_components",
                UserWarning,
                stacklevel=4,
            )
        self.weights_ = weights

    def _e_step(self, x: torch.Tensor, w: torch.Tensor | None):
        """The fused E-step pass: ``(lower bound per sample, (stats, N_k))``.

        The bound is ``(Σ_n w_n ln p(x_n | θ_old) + ln p(θ_old)) / Σ_n w_n`` (Eq. 10 with an
        exact E-step; ``ln p(θ)`` is 0 for maximum likelihood); the responsibilities are
        consumed chunk by chunk into the M-step's sufficient statistics.
        """
        log_prior = self._log_prior()
        stats, nk, ll, total = self._pass(x, w, cache=True)
        return float((ll + log_prior) / total), (stats, nk)

    def _m_step(self, x: torch.Tensor, w: torch.Tensor | None, q) -> None:
        stats, nk = q
        self._m_step_from_statistics(stats, nk, x)

    def _iterate(self, x: torch.Tensor, w: torch.Tensor | None) -> float:
        if self.batch_size is not None:
            return self._stepwise_epoch(x, w)
        return super()._iterate(x, w)

    # ============================================================ initialisation
    def _initial_resp(self, x: torch.Tensor, w, rng: np.random.RandomState) -> torch.Tensor:
        """scikit-learn's initial responsibilities for ``init_params``."""
        return initial_responsibilities(x, self.n_components, self.init_params, rng, w)

    def fit(self, x, y=None, sample_weight=None):
        """Fit by EM (batch, or stepwise with ``batch_size``); ``y`` is ignored.

        Args:
            x: ``(N, d)`` data (NumPy or torch).
            sample_weight: optional non-negative ``(N,)`` weights.
        """
        self._feature_cache = None
        try:
            return super().fit(x, y, sample_weight=sample_weight)
        finally:
            self._feature_cache = None
            for scratch in ("_buffers", "_screen_policy"):  # per-fit state
                vars(self).pop(scratch, None)

    def _initialize(self, x, w, rng) -> None:
        self._feature_cache = None
        self._initialize_extra(x, w)
        if self._all_parameters_given():
            self._apply_initial_parameters()
        else:
            resp = self._initial_resp(x, w, rng)
            if w is not None:
                resp = resp * w[:, None]
            stats, nk = {}, None
            rows = self._rows_per_chunk(self._features(x[:1]).shape[1])
            for start in range(0, x.shape[0], rows):
                f = self._features(x[start : start + rows])
                r = resp[start : start + rows]
                for key, value in self._sufficient_statistics(f, r).items():
                    stats[key] = stats[key] + value if key in stats else value
                nk = r.sum(0) if nk is None else nk + r.sum(0)
            safe = torch.where(nk > 0, nk, torch.ones_like(nk))
            self._update_components(stats, safe)
            self.weights_ = nk / nk.sum()
            self._apply_initial_parameters()
        self._stepwise_stats = None
        self.n_steps_ = 0

    def _get_parameters(self) -> dict[str, Any]:
        return {
            "weights_": self.weights_.clone(),
            **{
                k: v.clone() if isinstance(v, torch.Tensor) else v
                for k, v in self._component_parameters().items()
            },
        }

    def _set_parameters(self, params: dict[str, Any]) -> None:
        for key, value in params.items():
            setattr(self, key, value)
        self._refresh()

    def _refresh(self) -> None:
        """Recompute caches derived from the fitted attributes (after set / load)."""

    def load_fitted(self, tensors, state) -> None:
        super().load_fitted(tensors, state)
        self._device, self._fit_dtype = self.weights_.device, self.weights_.dtype
        self._refresh()

    # ============================================================ public methods
    def _chunked(self, x: torch.Tensor, fn) -> torch.Tensor:
        rows = self._rows_per_chunk(self._features(x[:1]).shape[1])
        return torch.cat([fn(self._log_joint(self._features(c))) for c in x.split(rows)])

    def _weighted_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        self._validate_values(x, "X")
        return self._chunked(x, lambda lj: lj)

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        self._validate_values(x, "X")
        return self._chunked(x, lambda lj: lj.argmax(1))

    def _draw(self, n: int, generator: torch.Generator | None):
        """``z ~ Cat(π)``, then ``x ~ p(x | θ_z)``; tensors on the model's device."""
        gen_device = generator.device if generator is not None else self.weights_.device
        probs = self.weights_.to(gen_device)
        labels = torch.multinomial(probs, int(n), replacement=True, generator=generator)
        x = self._sample_components(labels, generator).to(self.weights_.device)
        return x, labels.to(self.weights_.device)

    def n_parameters(self) -> int:
        """Number of free parameters: component parameters plus ``K - 1`` weights."""
        self.check_is_fitted()
        with self._torch_state():
            return int(self._n_component_parameters() + self.n_components - 1)

    _n_parameters = n_parameters  # scikit-learn's name (its test suite calls it)

    def bic(self, X) -> float:
        """Bayesian information criterion ``-2 ln L + p ln N`` (lower is better)."""
        n = len(X)
        return -2 * self.score(X) * n + self.n_parameters() * math.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion ``-2 ln L + 2 p`` (lower is better)."""
        return -2 * self.score(X) * len(X) + 2 * self.n_parameters()
