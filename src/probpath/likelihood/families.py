"""Mixture families beyond the Gaussian: Bernoulli and Poisson mixtures by EM (Survey §1.1.3).

Both are exponential families, so — like :class:`~probpath.likelihood.mixture.GaussianMixture`
— the component log-likelihood is ``T(x) . eta_k`` with ``T(x) = [x, 1, h(x)]``, the E-step is
one matrix product and the M-step reads the additive statistics ``resp^T T(x)``:

* Bernoulli (binary vectors, e.g. binarised digits):
  ``ln p(x | p_k) = Σ_j x_j logit(p_kj) + Σ_j ln(1 - p_kj)``; M-step ``p_k = S1_k / N_k``.
* Poisson (count vectors): ``ln p(x | λ_k) = Σ_j x_j ln λ_kj - Σ_j λ_kj - Σ_j ln x_j!``;
  M-step ``λ_k = S1_k / N_k``.

Probabilities are kept in ``[1e-10, 1 - 1e-10]`` and rates above ``1e-10`` so that a feature
that is constant within a component never yields ``0 * log 0``.
"""

from __future__ import annotations

import torch

from probpath.likelihood.mixture import MixtureEM, responsibility_sums

__all__ = ["BernoulliMixture", "PoissonMixture"]

_FLOOR = 1e-10


class _CountLikeMixture(MixtureEM):
    """Shared plumbing: features ``[x, 1, h(x)]``, statistics ``resp^T [x, 1, h(x)]``."""

    _param_name = ""

    def _base_measure(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0])

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
        return torch.cat([x, ones, self._base_measure(x)[:, None]], dim=1)

    def _natural(self) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _natural()")

    def _log_joint(self, f: torch.Tensor) -> torch.Tensor:
        return torch.addmm(torch.log(self.weights_), f, self._natural().T)

    def _log_joint_t(self, f: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return torch.addmm(torch.log(self.weights_)[:, None], self._natural(), f.T, out=out)

    def _component_log_prob(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self._natural().T

    def _sufficient_statistics(self, f: torch.Tensor, resp: torch.Tensor) -> dict:
        d = f.shape[1] - 2
        return {"s1": responsibility_sums(resp, f)[:, :d]}

    def _component_parameters(self) -> dict[str, torch.Tensor]:
        return {self._param_name: getattr(self, self._param_name)}

    def _n_component_parameters(self) -> int:
        return self.n_components * self.n_features_in_


class BernoulliMixture(_CountLikeMixture):
    """Mixture of products of Bernoulli distributions over binary vectors, fitted by EM.

    ``p(x) = Σ_k π_k Π_j p_kj^{x_j} (1 - p_kj)^{1 - x_j}`` for ``x ∈ {0, 1}^d``.
    Takes the arguments of :class:`~probpath.likelihood.mixture.MixtureEM`.

    Attributes:
        weights_ ``(K,)``, probs_ ``(K, d)`` (``p_kj = P(x_j = 1 | z = k)``), and the EM
        attributes ``converged_``, ``n_iter_``, ``lower_bound_``, ``lower_bounds_``.

    Example:
        >>> x = (torch.rand(100, 5, generator=torch.Generator().manual_seed(0)) > 0.5).double()
        >>> BernoulliMixture(2, random_state=0).fit(x).probs_.shape
        torch.Size([2, 5])
    """

    _param_name = "probs_"

    def _validate_values(self, x: torch.Tensor, name: str) -> None:
        if not bool(((x == 0) | (x == 1)).all()):
            raise ValueError(
                f"{name} must be binary (0/1) for a BernoulliMixture; binarise it first, "
                "e.g. (x > 0.5).double()"
            )

    def _natural(self) -> torch.Tensor:
        p = self.probs_
        return torch.cat(
            [torch.logit(p), torch.log1p(-p).sum(1, keepdim=True), torch.ones_like(p[:, :1])],
            dim=1,
        )

    def _update_components(self, stats: dict, nk: torch.Tensor) -> None:
        self.probs_ = (stats["s1"] / nk[:, None]).clamp(_FLOOR, 1 - _FLOOR)

    def _reseed_components(self, empty: list[int], points: torch.Tensor) -> None:
        probs = self.probs_.clone()
        probs[empty] = 0.25 + 0.5 * points  # leaning towards the point, not degenerate
        self.probs_ = probs

    def _sample_components(self, labels: torch.Tensor, generator) -> torch.Tensor:
        p = self.probs_.to(labels.device)[labels]
        return torch.bernoulli(p, generator=generator)


class PoissonMixture(_CountLikeMixture):
    """Mixture of products of Poisson distributions over count vectors, fitted by EM.

    ``p(x) = Σ_k π_k Π_j Poisson(x_j | λ_kj)`` for non-negative integer ``x``.
    Takes the arguments of :class:`~probpath.likelihood.mixture.MixtureEM`.

    Attributes:
        weights_ ``(K,)``, rates_ ``(K, d)``, and the EM attributes.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.poisson(torch.full((200, 3), 4.0), generator=g).double()
        >>> PoissonMixture(1).fit(x).rates_.shape
        torch.Size([1, 3])
    """

    _param_name = "rates_"

    def _validate_values(self, x: torch.Tensor, name: str) -> None:
        if not bool(((x >= 0) & (x == torch.round(x))).all()):
            raise ValueError(
                f"{name} must hold non-negative integer counts for a PoissonMixture; "
                "round or clip the data first"
            )

    def _base_measure(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.lgamma(x + 1).sum(1)

    def _natural(self) -> torch.Tensor:
        lam = self.rates_
        return torch.cat(
            [torch.log(lam), -lam.sum(1, keepdim=True), torch.ones_like(lam[:, :1])], dim=1
        )

    def _update_components(self, stats: dict, nk: torch.Tensor) -> None:
        self.rates_ = (stats["s1"] / nk[:, None]).clamp_min(_FLOOR)

    def _reseed_components(self, empty: list[int], points: torch.Tensor) -> None:
        rates = self.rates_.clone()
        rates[empty] = points.clamp_min(0.5)
        self.rates_ = rates

    def _sample_components(self, labels: torch.Tensor, generator) -> torch.Tensor:
        lam = self.rates_.to(labels.device)[labels]
        return torch.poisson(lam, generator=generator)
