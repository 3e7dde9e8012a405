"""Stepwise (mini-batch) EM for :class:`~probpath.likelihood.mixture_em.MixtureEM`.

Each mini-batch runs the fused E-step pass and folds its normalised sufficient statistics into
running averages ``s <- (1 - η_t) s + η_t s_batch`` with ``η_t = (t + 2)^(-stepwise_decay)``;
the M-step uses them scaled to the number of samples (Cappé & Moulines 2009, Liang & Klein
2009). ``fit`` with ``batch_size`` runs one shuffled epoch per EM iteration; ``partial_fit``
one step per call, for streams.
"""

from __future__ import annotations

import numpy as np
import torch

from probpath.likelihood._arrays import as_input

__all__ = ["StepwiseEM"]


class StepwiseEM:
    """Mixin of :class:`~probpath.likelihood.mixture_em.MixtureEM`: stepwise EM."""

    _stepwise_stats: dict[str, torch.Tensor] | None = None

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
