"""Finite mixtures fitted by EM, and the Gaussian mixture (Survey §1.1.2, Eqs. 8–11).

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
25 lines. :class:`GaussianMixture` (here) and :mod:`probpath.likelihood.families`
(Bernoulli, Poisson) are written the same way.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from probpath.core.model import Capabilities
from probpath.core.validation import check_choice, check_positive_int
from probpath.likelihood import _gaussian_covariance as gc
from probpath.likelihood._arrays import as_input
from probpath.likelihood._mixture_api import MixtureAPI
from probpath.likelihood.em import EMEstimator

__all__ = [
    "MixtureEM",
    "GaussianMixture",
    "INIT_PARAMS",
    "initial_responsibilities",
    "responsibility_sums",
]

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
_PRIOR_KEYS = {"weight_concentration", "mean_precision", "mean", "degrees_of_freedom", "covariance"}


def check_array_parameter(value, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A user-given initial parameter as a float64 array of ``shape`` (scikit-learn's messages)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != tuple(shape):
        raise ValueError(
            f"The parameter '{name}' should have the shape of {tuple(shape)}, but got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"The parameter '{name}' contains NaN or infinite values")
    return arr


def responsibility_sums(resp: torch.Tensor, f: torch.Tensor, blocks: int = 64) -> torch.Tensor:
    """``resp^T @ f``: the responsibility-weighted sums ``Σ_n γ_nk f_n``, shape ``(K, F)``.

    Long-and-thin products (``N`` rows, few columns) run several times faster as a batch of
    ``blocks`` products summed afterwards than as one matrix product reducing over ``N``.
    ``resp`` may be the transpose of a contiguous ``(K, N)`` array (the E-step's layout).

    Args:
        resp: ``(N, K)`` responsibilities (times sample weights).
        f: ``(N, F)`` per-sample features.
    """
    n, k = resp.shape
    b = max(1, min(blocks, n // 512))
    m = n // b * b
    if not resp.is_contiguous() and resp.T.is_contiguous():
        rt = resp.T  # (K, N): blocks of columns, batched as (b, K, N / b)
        out = torch.bmm(
            rt[:, :m].reshape(k, b, m // b).transpose(0, 1), f[:m].reshape(b, m // b, f.shape[1])
        ).sum(0)
        return out + rt[:, m:] @ f[m:] if m < n else out
    out = torch.bmm(
        resp[:m].reshape(b, m // b, k).transpose(1, 2), f[:m].reshape(b, m // b, f.shape[1])
    ).sum(0)
    if m < n:
        out = out + resp[m:].T @ f[m:]
    return out


def initial_responsibilities(
    x: torch.Tensor,
    n_components: int,
    init_params: str,
    rng: np.random.RandomState,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Initial responsibilities ``(N, K)``, drawn exactly as scikit-learn's mixtures draw them.

    ``kmeans`` / ``k-means++`` use scikit-learn's ``KMeans`` / ``kmeans_plusplus`` (the
    design guide's choice for seeding); ``random`` draws uniform rows; ``random_from_data``
    puts each component on one data point. Shared by EM and the variational mixture.
    """
    n, k = x.shape[0], n_components
    if init_params in ("kmeans", "k-means++"):
        from sklearn.cluster import KMeans, kmeans_plusplus

        x_np = x.detach().cpu().numpy()
        w_np = None if sample_weight is None else sample_weight.cpu().numpy()
        resp = np.zeros((n, k))
        if init_params == "kmeans":
            km = KMeans(n_clusters=k, n_init=1, random_state=rng)
            labels = km.fit(x_np, sample_weight=w_np).labels_
            resp[np.arange(n), labels] = 1
        else:
            _, idx = kmeans_plusplus(x_np, k, random_state=rng, sample_weight=w_np)
            resp[idx, np.arange(k)] = 1
        return torch.as_tensor(resp, dtype=x.dtype, device=x.device)
    if init_params == "random":
        resp = torch.as_tensor(rng.uniform(size=(n, k)), dtype=x.dtype, device=x.device)
        return resp / resp.sum(1, keepdim=True)
    resp = torch.zeros(n, k, dtype=x.dtype, device=x.device)
    idx = rng.choice(n, size=k, replace=False)
    resp[torch.as_tensor(idx, device=x.device), torch.arange(k, device=x.device)] = 1
    return resp


class MixtureEM(MixtureAPI, EMEstimator):
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

    _stepwise_stats: dict[str, torch.Tensor] | None = None

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

    def _iterate(self, x: torch.Tensor, w: torch.Tensor | None) -> float:
        if self.batch_size is not None:
            return self._stepwise_epoch(x, w)
        log_prior = self._log_prior()
        stats, nk, ll, total = self._pass(x, w, cache=True)
        self._m_step_from_statistics(stats, nk, x)
        return float((ll + log_prior) / total)

    # ------------------------------------------------------------- stepwise EM
    def _stepwise_update(self, xb, wb, scale: float) -> tuple[float, float]:
        """One stepwise-EM step on a mini-batch; returns ``(log_lik_sum, weight_sum)``."""
        stats, nk, ll, total = self._pass(xb, wb)
        t = getattr(self, "n_steps_", 0)
        eta = (t + 2.0) ** (-float(self.stepwise_decay))
        norm = {k: v / total for k, v in stats.items()}
        norm["nk"] = nk / total
        if self._stepwise_stats is None:
            self._stepwise_stats = norm
        else:
            self._stepwise_stats = {
                k: (1 - eta) * self._stepwise_stats[k] + eta * norm[k] for k in norm
            }
        self.n_steps_ = t + 1
        run = {k: v * scale for k, v in self._stepwise_stats.items()}
        nk_run = run.pop("nk")
        self._m_step_from_statistics(run, nk_run, xb)
        return float(ll), float(total)

    def _stepwise_epoch(self, x, w) -> float:
        seed = None if self.random_state is None else self.random_state + self.n_steps_
        rng = np.random.RandomState(seed)
        order = torch.as_tensor(rng.permutation(x.shape[0]), device=x.device)
        scale = float(w.sum()) if w is not None else float(x.shape[0])
        ll, total = 0.0, 0.0
        for start in range(0, x.shape[0], int(self.batch_size)):
            idx = order[start : start + int(self.batch_size)]
            a, b = self._stepwise_update(x[idx], None if w is None else w[idx], scale)
            ll, total = ll + a, total + b
        return ll / total

    def partial_fit(self, x, y=None, sample_weight=None):
        """One stepwise-EM step on a mini-batch of a stream (initialises on the first call).

        The running statistics are averaged with step ``η_t = (t + 2)^(-stepwise_decay)``;
        the M-step uses them scaled to the number of samples seen so far. The running
        statistics are not saved by ``save``: after ``load`` the first call restarts them.
        """
        started = getattr(self, "weights_", None) is not None and hasattr(self, "n_steps_")
        x, w = self._prepare_partial(x, sample_weight, started)
        with self._torch_state(keep=True):
            self._partial_step(x, w, started)
        vars(self).pop("_buffers", None)
        return self

    def _partial_step(self, x: torch.Tensor, w: torch.Tensor | None, started: bool) -> None:
        if not started:
            self._check_parameters(x)
            self._initialize(x, w, np.random.RandomState(self.random_state))
            self.n_steps_ = 0
            self._seen = 0.0
            self._stepwise_stats = None
        self._seen = getattr(self, "_seen", 0.0) + (float(w.sum()) if w is not None else len(x))
        ll, total = self._stepwise_update(x, w, self._seen)
        self.lower_bound_ = ll / total
        self.converged_ = False
        self.n_iter_ = int(self.n_steps_)
        self.lower_bounds_ = [*getattr(self, "lower_bounds_", []), self.lower_bound_]

    def _prepare_partial(self, x, sample_weight, started: bool):
        if not started:
            return self._prepare(x, sample_weight)
        x, _ = as_input(self, x, reset=False, dtype=self._dtype, device=self._device)
        self._validate_values(x, "X")
        return x, self._check_sample_weight(x, sample_weight)

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
            vars(self).pop("_buffers", None)

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


class GaussianMixture(MixtureEM):
    """Gaussian mixture fitted by EM, with scikit-learn's parameters (Survey §1.1.2).

    ``p(x) = Σ_k π_k N(x | mu_k, Sigma_k)``; the E-step is one matrix product in
    exponential-family form (see :mod:`probpath.likelihood._gaussian_covariance`); the data
    are internally centred at their mean (``center_``) for accuracy.

    Args:
        n_components: ``K``.
        covariance_type: "full", "tied", "diag" or "spherical".
        reg_covar: added to the covariance diagonals (keeps them positive definite).
        means_init: optional ``(K, d)`` initial means.
        precisions_init: optional initial precisions (shape per covariance type).
        prior: ``None`` (maximum likelihood) or a dict for MAP-EM with keys
            ``weight_concentration`` (Dirichlet ``α >= 1``, default 1),
            ``mean_precision`` (``κ0 >= 0``, default 0 — flat on the means),
            ``mean`` (``m0``, default the data mean), ``covariance`` (inverse-Wishart scale
            ``Ψ0``: a ``(d, d)`` matrix or a float times the identity; ``None`` — flat)
            and ``degrees_of_freedom`` (``ν0 > d - 1``, default ``d + 2``).
            The M-step then returns the posterior mode:
            ``π_k ∝ N_k + α - 1``, ``mu_k = (S1_k + κ0 m0) / (N_k + κ0)``,
            ``Sigma_k = (Ψ0 + S_k + κ0 (mu_k - m0)(mu_k - m0)^T) / (N_k + ν0 + d + 2)``
            (full; ``S_k`` the scatter about ``mu_k``), and ``lower_bound_`` includes
            ``ln p(θ) / N`` up to a constant (end of Survey §1.1).
        others: see :class:`MixtureEM`.

    Attributes:
        weights_ ``(K,)``, means_ ``(K, d)``, covariances_, precisions_,
        precisions_cholesky_ (shapes per covariance type), center_ ``(d,)``,
        converged_, n_iter_, lower_bound_, lower_bounds_.

    Example:
        >>> x = torch.cat([torch.randn(200, 2) - 3, torch.randn(200, 2) + 3]).double()
        >>> gm = GaussianMixture(2, random_state=0).fit(x)
        >>> sorted(round(float(m), 0) for m in gm.means_[:, 0])
        [-3.0, 3.0]
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: list[float] | None = None,
        means_init: list[list[float]] | None = None,
        precisions_init: list | None = None,
        random_state: int | None = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        prior: dict | None = None,
        chunk_size: int | None = None,
        batch_size: int | None = None,
        stepwise_decay: float = 0.7,
        device: str | None = None,
        dtype: str | None = None,
    ):
        super().__init__(
            n_components,
            tol=tol,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            weights_init=weights_init,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
            chunk_size=chunk_size,
            batch_size=batch_size,
            stepwise_decay=stepwise_decay,
            device=device,
            dtype=dtype,
        )
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.prior = prior

    # ------------------------------------------------------------------ checks
    def _check_parameters(self, x: torch.Tensor) -> None:
        super()._check_parameters(x)
        check_choice(self.covariance_type, "covariance_type", gc.COVARIANCE_TYPES)
        if not (isinstance(self.reg_covar, int | float) and self.reg_covar >= 0):
            raise ValueError(f"reg_covar must be a non-negative number, got {self.reg_covar!r}")
        if self.prior is not None:
            if not isinstance(self.prior, dict) or set(self.prior) - _PRIOR_KEYS:
                raise ValueError(
                    f"prior must be None or a dict with keys among {sorted(_PRIOR_KEYS)}; "
                    f"got {self.prior!r}"
                )
            self._prior_values(x.shape[1])  # validates
        k, d, ct = self.n_components, x.shape[1], self.covariance_type
        if self.weights_init is not None:
            w = check_array_parameter(self.weights_init, "weights", (k,))
            if (w < 0).any() or (w > 1).any():
                raise ValueError(  # scikit-learn's wording (min and max as it prints them)
                    "The parameter 'weights' should be in the range [0, 1], but got max value "
                    f"{np.min(w):.5f}, min value {np.max(w):.5f}"
                )
            atol = 1e-6 if x.dtype == torch.float32 else 1e-8
            if not np.allclose(np.abs(1.0 - np.sum(w)), 0.0, atol=atol):
                raise ValueError(
                    "The parameter 'weights' should be normalized, but got sum(weights) = "
                    f"{np.sum(w):.5f}"
                )
        if self.means_init is not None:
            check_array_parameter(self.means_init, "means", (k, d))
        if self.precisions_init is not None:
            name = f"{ct} precision"
            p = check_array_parameter(self.precisions_init, name, self._cov_shape(d))
            if ct in ("diag", "spherical"):
                if (p <= 0).any():
                    raise ValueError(f"'{name}' should be positive")
            else:
                for m in p.reshape(-1, d, d):
                    if not (np.allclose(m, m.T) and (np.linalg.eigvalsh(m) > 0).all()):
                        raise ValueError(f"'{name}' should be symmetric, positive-definite")

    def _cov_shape(self, d: int) -> tuple[int, ...]:
        k = self.n_components
        return {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[
            self.covariance_type
        ]

    def _prior_values(self, d: int) -> dict[str, Any]:
        """The prior's hyper-parameters with defaults, validated."""
        p = dict(self.prior or {})
        alpha = float(p.get("weight_concentration", 1.0))
        if alpha < 1:
            raise ValueError(
                "prior['weight_concentration'] must be >= 1 for a MAP estimate (the Dirichlet "
                "mode is undefined below 1); use BayesianGaussianMixture for sparse priors"
            )
        kappa = float(p.get("mean_precision", 0.0))
        if kappa < 0:
            raise ValueError("prior['mean_precision'] must be >= 0")
        mean = p.get("mean")
        if mean is not None:
            mean = self._as_param(mean, "prior['mean']", (d,))
        psi = p.get("covariance")
        nu = float(p.get("degrees_of_freedom", d + 2))
        if psi is not None:
            if isinstance(psi, int | float):
                if psi <= 0:
                    raise ValueError("prior['covariance'] as a number must be positive")
                psi = float(psi) * torch.eye(d, dtype=self._dtype, device=self._device)
            else:
                psi = self._as_param(psi, "prior['covariance']", (d, d))
            if nu <= d - 1:
                raise ValueError(f"prior['degrees_of_freedom'] must be > d - 1 = {d - 1}")
        return {"alpha": alpha, "kappa": kappa, "mean": mean, "psi": psi, "nu": nu}

    # ------------------------------------------------------------------ frame
    def _initialize_extra(self, x, w) -> None:
        # sufficient statistics are computed about the data mean, for accuracy
        if w is None:
            self.center_ = x.mean(0)
        else:
            self.center_ = (w[:, None] * x).sum(0) / w.sum()

    # full covariances with more features than this use the whitened E-step (``x U_k``)
    # instead of the ``d (d + 1) / 2`` quadratic features (see ``gc.stacked_whitening``)
    _QUADRATIC_FEATURES_MAX_D = 16

    def _whitened(self) -> bool:
        return self.covariance_type == "full" and (
            self.n_features_in_ > self._QUADRATIC_FEATURES_MAX_D
        )

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self._whitened():
            return x - self.center_
        return gc.gaussian_features(x - self.center_, self.covariance_type)

    def _rows_per_chunk(self, width: int) -> int:
        if self.chunk_size is None and self._whitened():
            # the (rows, K d) scratch of the whitened E-step stays in the cache (~2 MiB)
            return max(64, (1 << 18) // (self.n_components * width))
        return super()._rows_per_chunk(width)

    # ------------------------------------------------------------- component math
    def _refresh(self) -> None:
        if "precisions_cholesky_" not in vars(self):
            return
        ct = self.covariance_type
        self.precisions_ = gc.precisions_from_cholesky(self.precisions_cholesky_, ct)
        means_c = self.means_ - self.center_
        if self._whitened():
            self._whitening = gc.stacked_whitening(means_c, self.precisions_cholesky_)
        else:
            self._eta = gc.natural_parameters(means_c, self.precisions_cholesky_, ct)

    def _log_joint(self, f: torch.Tensor) -> torch.Tensor:
        if self._whitened():
            out = torch.log(self.weights_)[:, None].repeat(1, f.shape[0])
            return self._whitened_log_joint_t(f, out, fresh=True).T
        out = torch.addmm(torch.log(self.weights_), f, self._eta.T)  # one GEMM
        if self.covariance_type == "tied":
            d = self.n_features_in_
            out = out + gc.tied_quadratic(f[:, :d], self.precisions_cholesky_)[:, None]
        return out

    def _whitened_log_joint_t(
        self, f: torch.Tensor, out: torch.Tensor, fresh: bool = False
    ) -> torch.Tensor:
        """``out += ln p(x | θ_k)`` (``(K, n)``); the scratch is a fit workspace unless
        ``fresh`` (prediction keeps no buffers)."""
        shape = (f.shape[0], self.n_components * f.shape[1])
        work = f.new_empty(shape) if fresh else self._workspace(shape, f, 3)
        return gc.whitened_log_prob_t(f, *self._whitening, out=out, work=work)

    def _log_joint_t(self, f: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self._whitened():
            out.copy_(torch.log(self.weights_)[:, None].expand_as(out))
            return self._whitened_log_joint_t(f, out)
        torch.addmm(torch.log(self.weights_)[:, None], self._eta, f.T, out=out)  # (K, n)
        if self.covariance_type == "tied":
            d = self.n_features_in_
            out.add_(gc.tied_quadratic(f[:, :d], self.precisions_cholesky_))
        return out

    def _component_log_prob(self, f: torch.Tensor) -> torch.Tensor:
        if self._whitened():
            out = f.new_zeros(self.n_components, f.shape[0])
            return self._whitened_log_joint_t(f, out, fresh=True).T
        out = f @ self._eta.T
        if self.covariance_type == "tied":
            d = self.n_features_in_
            out = out + gc.tied_quadratic(f[:, :d], self.precisions_cholesky_)[:, None]
        return out

    def _sufficient_statistics(self, f: torch.Tensor, resp: torch.Tensor) -> dict:
        if self._whitened():  # S2 (K, d, d) and S1 (K, d) instead of resp^T T(x)
            work = self._workspace((f.shape[0], self.n_components * f.shape[1]), f, 3)
            return {"S2": gc.second_moment_sums(f, resp, work), "S1": resp.T @ f}
        stats = {"T": responsibility_sums(resp, f)}
        if self.covariance_type == "tied":
            d = self.n_features_in_
            xc = f[:, :d]
            stats["xx"] = responsibility_sums(xc * resp.sum(1, keepdim=True), xc)
        return stats

    def _update_components(self, stats: dict, nk: torch.Tensor) -> None:
        d, ct = self.n_features_in_, self.covariance_type
        if "S2" in stats:  # the whitened full path: the same layout as resp^T T(x)
            t = torch.cat([gc.vech(stats["S2"]), stats["S1"]], dim=1)
        else:
            t = stats["T"]
        offset = {"full": d * (d + 1) // 2, "diag": d, "spherical": 1, "tied": 0}[ct]
        s1 = t[:, offset : offset + d]
        pr = self._prior_values(d) if self.prior is not None else None
        if pr is None or pr["kappa"] == 0:
            means_c = s1 / nk[:, None]
            kappa, m0 = 0.0, None
        else:
            kappa = pr["kappa"]
            m0 = (pr["mean"] - self.center_) if pr["mean"] is not None else torch.zeros_like(s1[0])
            means_c = (s1 + kappa * m0) / (nk[:, None] + kappa)
        extra, psi = 0.0, None
        if pr is not None:
            if pr["psi"] is not None:
                psi = pr["psi"]
                extra += pr["nu"] + d + 1
            if kappa > 0:
                extra += self.n_components if ct == "tied" else 1
        self.covariances_ = gc.covariance_from_scatter(
            t,
            nk,
            means_c,
            ct,
            xx=stats.get("xx"),
            psi=psi,
            kappa=kappa,
            mean_prior=m0,
            extra_dof=extra,
            reg_covar=float(self.reg_covar),
        )
        self.means_ = means_c + self.center_
        empty = getattr(self, "_empty_components", [])
        if empty and ct != "tied":  # placeholders until re-seeded
            self.covariances_[empty] = (
                1.0 if ct != "full" else torch.eye(d, dtype=t.dtype, device=t.device)
            )
        self.precisions_cholesky_ = gc.precision_cholesky(self.covariances_, ct)
        self._refresh()

    def _update_weights(self, nk: torch.Tensor) -> torch.Tensor:
        if self.prior is None:
            return nk / nk.sum()
        alpha = self._prior_values(self.n_features_in_)["alpha"]
        num = (nk + alpha - 1).clamp_min(0)
        return num / num.sum()

    def _log_prior(self) -> float:
        """``ln p(θ)`` of the Dirichlet and Normal-inverse-Wishart priors, up to a constant."""
        if self.prior is None:
            return 0.0
        d, ct = self.n_features_in_, self.covariance_type
        pr = self._prior_values(d)
        lp = (pr["alpha"] - 1) * torch.log(self.weights_).sum()
        log_det_prec = 2 * gc.log_det_cholesky(self.precisions_cholesky_, ct, d)  # -ln|Σ|
        n_cov = 1 if ct == "tied" else self.n_components
        log_det_prec = log_det_prec.expand(n_cov) if log_det_prec.ndim else log_det_prec[None]
        prec = self.precisions_
        if pr["psi"] is not None:
            a = pr["nu"] + d + 1
            lp = lp + 0.5 * a * log_det_prec.sum()
            psi = pr["psi"]
            if ct == "full":
                tr = (prec * psi).sum((-1, -2))
            elif ct == "tied":
                tr = (prec * psi).sum()[None]
            elif ct == "diag":
                tr = (prec * torch.diagonal(psi)).sum(-1)
            else:
                tr = prec * torch.diagonal(psi).sum()
            lp = lp - 0.5 * tr.sum()
        if pr["kappa"] > 0:
            m0 = pr["mean"] if pr["mean"] is not None else self.center_
            delta = self.means_ - m0
            if ct == "full":
                maha = torch.einsum("ki,kij,kj->k", delta, prec, delta)
            elif ct == "tied":
                maha = torch.einsum("ki,ij,kj->k", delta, prec, delta)
            elif ct == "diag":
                maha = (delta * delta * prec).sum(-1)
            else:
                maha = (delta * delta).sum(-1) * prec
            per = log_det_prec.sum() if ct == "tied" else log_det_prec
            lp = lp + 0.5 * (per.sum() if ct != "tied" else self.n_components * per)
            lp = lp - 0.5 * pr["kappa"] * maha.sum()
        return float(lp)

    def _all_parameters_given(self) -> bool:
        return (
            self.weights_init is not None
            and self.means_init is not None
            and self.precisions_init is not None
        )

    def _apply_initial_parameters(self) -> None:
        k, d, ct = self.n_components, self.n_features_in_, self.covariance_type
        super()._apply_initial_parameters()
        if self.means_init is not None:
            self.means_ = self._as_param(self.means_init, "means", (k, d))
        if self.precisions_init is not None:
            prec = self._as_param(self.precisions_init, f"{ct} precision", self._cov_shape(d))
            self.precisions_cholesky_ = gc.precision_cholesky_from_precisions(prec, ct)
            self.covariances_ = gc.covariances_from_precision_cholesky(
                self.precisions_cholesky_, ct
            )
        self._refresh()

    def _component_parameters(self) -> dict[str, torch.Tensor]:
        return {
            "means_": self.means_,
            "covariances_": self.covariances_,
            "precisions_cholesky_": self.precisions_cholesky_,
            "center_": self.center_,
        }

    def _reseed_components(self, empty: list[int], points: torch.Tensor) -> None:
        ct = self.covariance_type
        means = self.means_.clone()
        means[empty] = points
        cov = self.covariances_.clone()
        if ct in ("full", "diag", "spherical"):
            keep = [k for k in range(self.n_components) if k not in empty]
            pooled = cov[keep].mean(0) if keep else cov.mean(0)
            cov[empty] = pooled
        self.means_, self.covariances_ = means, cov
        self.precisions_cholesky_ = gc.precision_cholesky(cov, ct)
        self._refresh()

    def _n_component_parameters(self) -> int:
        d = self.n_features_in_
        cov = gc.n_covariance_parameters(self.covariance_type, self.n_components, d)
        return cov + self.n_components * d

    def _draw_from_random_state(self, n: int, rng):
        return self._gaussian_draws_like_sklearn(n, rng)

    def _sample_components(self, labels: torch.Tensor, generator) -> torch.Tensor:
        dev = labels.device
        d, ct = self.n_features_in_, self.covariance_type
        z = torch.randn(labels.shape[0], d, generator=generator, dtype=self._dtype, device=dev)
        u = self.precisions_cholesky_.to(dev)
        means = self.means_.to(dev)
        if ct == "full":
            lower = u[labels].transpose(-1, -2)  # U^T: (U^T)^{-1} z has covariance Σ
            y = torch.linalg.solve_triangular(lower, z[:, :, None], upper=False)[:, :, 0]
        elif ct == "tied":
            y = torch.linalg.solve_triangular(u.T, z.T, upper=False).T
        elif ct == "diag":
            y = z / u[labels]
        else:
            y = z / u[labels][:, None]
        return means[labels] + y
