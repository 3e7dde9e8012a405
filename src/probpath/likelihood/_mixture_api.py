"""The public methods every mixture shares, with scikit-learn's meanings (``BaseMixture``).

``score_samples``, ``score``, ``predict``, ``predict_proba``, ``fit_predict`` and
``sample(n_samples) -> (X, y)`` follow scikit-learn; ``log_prob``, ``loss`` and
``generate`` are probpath's generative interface (tensors; see
:func:`probpath.core.model.draw`). A mixture implements three hooks, on torch tensors:

* ``_weighted_log_prob(x) -> (N, K)``: ``ln pi_k + ln p(x_n | k)`` (for the variational
  mixture: the expectations under ``q``, scikit-learn's convention);
* ``_density_log_prob(x) -> (N,)``: the normalised log-density that ``generate`` draws from
  (default: ``logsumexp`` of the above);
* ``_draw(n, generator) -> (x, labels)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import ClusterMixin
from sklearn.utils import check_random_state

from probpath.likelihood._arrays import ArrayFormat, as_input, as_output
from probpath.likelihood.covariance import covariance_type
from probpath.likelihood.em import resolve_dtype

__all__ = ["MixtureAPI"]


class MixtureAPI(ClusterMixin):
    """scikit-learn's mixture methods over the hooks in the module docstring."""

    # -------------------------------------------------------------------- hooks
    def _weighted_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _weighted_log_prob()")

    def _density_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self._weighted_log_prob(x), dim=1)

    def _draw(self, n: int, generator: torch.Generator | None):
        raise NotImplementedError(f"{type(self).__name__} must implement _draw()")

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        """Most probable component per sample, ``(N,)``."""
        return self._weighted_log_prob(x).argmax(1)

    def _after_fit(self, x: torch.Tensor) -> None:
        # scikit-learn's final E-step: fit_predict(X) == fit(X).predict(X) == labels_
        self.labels_ = self._labels(x)

    def _validate_values(self, x: torch.Tensor, name: str) -> None:
        """Family-specific checks of the data values (e.g. binary, counts)."""

    # ---------------------------------------------------------------- plumbing
    _device = torch.device("cpu")

    @property
    def _dtype(self) -> torch.dtype | None:
        """The computation dtype: the fitted one, else the ``dtype`` argument (or ``None``)."""
        fitted = vars(self).get("_fit_dtype")
        if fitted is not None:
            return fitted
        return None if self.dtype is None else resolve_dtype(self.dtype)[1]

    def _prepare(self, x, sample_weight) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``fit``'s validation: ``X`` to a tensor (``dtype`` / ``device`` arguments or the
        input's own), recording the output format and the computation device."""
        x, fmt = as_input(
            self,
            x,
            reset=True,
            ensure_min_samples=2,
            dtype=None if self.dtype is None else resolve_dtype(self.dtype)[1],
            device=None if self.device is None else torch.device(self.device),
        )
        self._validate_values(x, "X")
        self._numpy_io, self._fit_dtype, self._device = fmt.numpy, x.dtype, x.device
        return x, self._check_sample_weight(x, sample_weight)

    def _input(self, x) -> tuple[torch.Tensor, ArrayFormat]:
        self.check_is_fitted()
        return as_input(self, x, reset=False, dtype=self._dtype, device=self._device)

    def _apply(self, x, fn) -> Any:
        t, fmt = self._input(x)
        with self._torch_state():
            out = fn(t)
        return as_output(out, fmt)

    # ------------------------------------------------------- scikit-learn API
    def score_samples(self, X):
        """``ln p(x_n)`` per sample, shape ``(N,)`` (scikit-learn's meaning)."""
        return self._apply(X, lambda x: torch.logsumexp(self._weighted_log_prob(x), dim=1))

    def score(self, X, y=None) -> float:
        """``score_samples(X).mean()`` (a float; the mean taken in the output's own type)."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X):
        """Responsibilities ``p(z = k | x_n)``, shape ``(N, K)``."""
        return self._apply(X, lambda x: torch.softmax(self._weighted_log_prob(x), dim=1))

    def predict(self, X):
        """Most probable component per sample, shape ``(N,)`` (int64)."""
        return self._apply(X, self._labels)

    def _gaussian_draws_like_sklearn(self, n: int, rng: np.random.RandomState):
        """scikit-learn's ``sample`` algorithm for a Gaussian mixture (the same draws from the
        same ``random_state``): component counts ``~ Multinomial(n, weights_)``, then each
        component's points in turn, labels in blocks."""
        weights = self.weights_.detach().cpu().numpy().astype(np.float64)
        means = self.means_.detach().cpu().numpy()
        cov = self.covariances_.detach().cpu().numpy()
        counts = rng.multinomial(n, weights)
        parts = covariance_type(self.covariance_type).draw_numpy(rng, means, cov, counts)
        labels = np.concatenate([np.full(int(s), j, dtype=np.int64) for j, s in enumerate(counts)])
        x = torch.as_tensor(np.vstack(parts), dtype=self.means_.dtype, device=self._device)
        return x, torch.as_tensor(labels, device=self._device)

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then label ``X`` with the fitted model: ``labels_`` (= ``fit(X).predict(X)``)."""
        return self.fit(X, y, sample_weight=sample_weight).labels_

    def sample(self, n_samples: int = 1):
        """Draw ``(X, y)``: ``n_samples`` points and their components (scikit-learn's ``sample``).

        Seeded from ``random_state``; arrays in the format of the fitted data (NumPy, or
        tensors on the model's device). For a tensor only, with a ``torch.Generator``, use
        :meth:`generate` (probpath's generative interface).
        """
        self.check_is_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}; pass an int >= 1")
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at "
                "least one sample."
            )
        rng = check_random_state(self.random_state)
        with self._torch_state():
            x, labels = self._draw_from_random_state(int(n_samples), rng)
        if getattr(self, "_numpy_io", False):
            return x.detach().cpu().numpy(), labels.cpu().numpy()
        return x, labels

    def _draw_from_random_state(self, n: int, rng: np.random.RandomState):
        """``sample``'s draws from a NumPy ``RandomState`` (default: a torch generator seeded
        from it; Gaussian mixtures override this to draw exactly as scikit-learn does)."""
        seed = int(rng.randint(np.iinfo(np.int32).max))
        return self._draw(n, torch.Generator(device=self._device).manual_seed(seed))

    # --------------------------------------------------- generative interface
    def generate(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_labels: bool = False,
    ):
        """probpath's generative ``sample``: ``n`` draws as a tensor ``(n, d)``.

        Args:
            n: number of samples (>= 1).
            cond: unused (unconditional model).
            generator: a ``torch.Generator`` (its device is used to draw).
            return_labels: also return the components ``(n,)``.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n must be a positive integer number of samples, got {n!r}")
        self.check_is_fitted()
        with self._torch_state():
            x, labels = self._draw(int(n), generator)
        return (x, labels) if return_labels else x

    def log_prob(self, x, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised log-density per sample, a tensor ``(batch,)`` (generative interface)."""
        t, _ = self._input(x)
        with self._torch_state():
            return self._density_log_prob(t)

    def loss(self, x, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample negative log-likelihood, a tensor ``(batch,)``."""
        return -self.log_prob(x)
