"""Variational inference (survey §1.1.5): a Bayesian Gaussian mixture and black-box VI.

* :class:`BayesianGaussianMixture` — mean-field coordinate-ascent VI for a Gaussian mixture
  with a Dirichlet-distribution or Dirichlet-process (stick-breaking) prior on the weights
  and a Normal–Wishart prior on each component's mean and precision. It is *variational
  EM* on the shared loop of :class:`~probpath.likelihood.em.EMEstimator`: the "E-step"
  updates ``q(Z)`` (responsibilities), the "M-step" updates ``q(pi) q(mu, Lambda)``, and the
  recorded objective is the ELBO of Eq. (14), which never decreases. Parameter names,
  update order and the ELBO's constant conventions follow scikit-learn's
  ``BayesianGaussianMixture`` (Bishop, PRML §10.2), so both give the same numbers from the
  same initial responsibilities.
* :class:`MeanFieldVI` — black-box VI for any differentiable ``log_joint(z)``: a
  reparameterised diagonal-Gaussian guide ``q(z) = prod_i N(z_i | m_i, s_i^2)`` (the
  mean-field family of §1.1.5 with Gaussian factors), a Monte Carlo estimate of
  ``E_q[ln p(x, z)]`` plus the analytic entropy ``H[q]``, maximised with Adam.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from probpath.core.model import Capabilities
from probpath.core.validation import (
    as_tensor,
    check_choice,
    check_positive_int,
    check_tensor,
)
from probpath.likelihood._gaussian_covariance import (
    COVARIANCE_TYPES,
    gaussian_features,
    log_det_cholesky,
    natural_parameters,
    precision_cholesky,
    precisions_from_cholesky,
    tied_quadratic,
)
from probpath.likelihood._mixture_api import MixtureAPI
from probpath.likelihood.em import EMEstimator, resolve_dtype
from probpath.likelihood.gaussian import randn
from probpath.likelihood.mixture import INIT_PARAMS, initial_responsibilities

__all__ = ["BayesianGaussianMixture", "MeanFieldVI"]

WEIGHT_PRIORS = ("dirichlet_process", "dirichlet_distribution")


# ---------------------------------------------------------------- Gaussian helpers
def _gaussian_statistics(
    x: torch.Tensor, resp: torch.Tensor, reg_covar: float, covariance_type: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted sufficient statistics ``(N_k, xbar_k, S_k)`` (PRML Eqs. 10.51–10.53).

    Args:
        x: ``(N, d)``.
        resp: ``(N, K)`` responsibilities (times sample weights, if any).
        reg_covar: added to the diagonal of ``S_k``.
        covariance_type: layout of ``S_k``: full ``(K, d, d)``, tied ``(d, d)``, diag
            ``(K, d)``, spherical ``(K,)``.
    """
    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
    xk = resp.mT @ x / nk[:, None]
    d = x.shape[1]
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    if covariance_type == "full":
        sk = torch.stack(  # one (d, d) scatter per component, O(N d) memory
            [(resp[:, k, None] * (x - xk[k])).mT @ (x - xk[k]) for k in range(len(nk))]
        )
        return nk, xk, sk / nk[:, None, None] + reg_covar * eye
    if covariance_type == "tied":
        sk = (x.mT @ x - (nk[:, None] * xk).mT @ xk) / nk.sum()
        return nk, xk, sk + reg_covar * eye
    avg_x2 = resp.mT @ (x * x) / nk[:, None]
    sk = avg_x2 - xk * xk + reg_covar
    return nk, xk, (sk if covariance_type == "diag" else sk.mean(1))


def _log_gaussian(
    x: torch.Tensor,
    means: torch.Tensor,
    prec_chol: torch.Tensor,
    covariance_type: str,
    centre: torch.Tensor,
) -> torch.Tensor:
    """``ln N(x_n | mu_k, (P_k P_k^T)^{-1})``, shape ``(N, K)``.

    Uses the shared exponential-family form ``T(x) . eta_k`` of
    :mod:`probpath.likelihood._gaussian_covariance`, in a frame shifted by ``centre`` (a
    point near the data) so the quadratic features do not lose precision.
    """
    xc, mc = x - centre, means - centre
    eta = natural_parameters(mc, prec_chol, covariance_type)
    out = gaussian_features(xc, covariance_type) @ eta.mT
    if covariance_type == "tied":
        out = out + tied_quadratic(xc, prec_chol)[:, None]
    return out


def _as_list(value: Any) -> Any:
    """Plain nested lists for array-like priors (the JSON config stays plain)."""
    if value is None or isinstance(value, int | float):
        return value
    return as_tensor(value, "prior").double().cpu().tolist()


def _float_tensor(value: Any, name: str, like: torch.Tensor) -> torch.Tensor:
    """A prior given as a number, list, array or tensor, as a tensor like ``like`` (0-d kept)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return torch.tensor(arr, dtype=like.dtype, device=like.device)


# ---------------------------------------------------------------- the VB mixture
class BayesianGaussianMixture(MixtureAPI, EMEstimator):
    """Variational Bayesian Gaussian mixture (survey §1.1.5; Bishop PRML §10.2).

    Model: ``pi ~ Dir(alpha_0)`` (``"dirichlet_distribution"``) or stick-breaking
    ``v_k ~ Beta(1, alpha_0)``, ``pi_k = v_k prod_{j<k} (1 - v_j)`` (``"dirichlet_process"``,
    truncated at ``n_components``); ``Lambda_k ~ Wishart(W_0, nu_0)``, ``mu_k | Lambda_k ~
    N(m_0, (beta_0 Lambda_k)^{-1})``; ``z_n ~ Cat(pi)``, ``x_n | z_n = k ~ N(mu_k,
    Lambda_k^{-1})``. The mean-field posterior ``q(Z) q(pi) prod_k q(mu_k, Lambda_k)`` is
    updated by coordinate ascent on the ELBO (Eq. 14): ``q(Z)`` from the expected log-weights
    and log-likelihoods (the "E-step"), then the conjugate updates of ``q(pi)`` and the
    Normal–Wishart ``q(mu_k, Lambda_k)`` (the "M-step").

    Parameter and attribute names, defaults, initialisation and update order are
    scikit-learn's, so from the same initial responsibilities both libraries agree to
    rounding. Components that the data do not need keep weights near zero.

    ELBO constant: ``lower_bound_`` is scikit-learn's value — the ELBO *evaluated right after
    the q(pi), q(mu, Lambda) update* (where the expected log-likelihood terms cancel against
    parts of the KL terms, PRML Eqs. 10.70–10.77), with every term that does not depend on
    the variational parameters dropped: the data's ``-N d/2 ln(2 pi)``, the prior
    normalisers ``ln C(alpha_0)`` / ``ln B(W_0, nu_0)`` and ``d/2 ln beta_0``, and the
    ``ln pi`` part of the Wishart normaliser. It is a total (not per-sample) bound and
    ``tol`` applies to it, as in scikit-learn.

    ``log_prob`` is the *plug-in* density ``sum_k weights_k N(x | means_k, covariances_k)``
    at the posterior means (``weights_ = E[pi]``, ``means_ = E[mu_k]``, ``covariances_ =
    E[Lambda_k]^{-1}``) — a normalised density, the one ``sample`` draws from.
    ``score_samples`` is scikit-learn's number instead: ``ln sum_k exp(E_q[ln pi_k + ln
    N(x | mu_k, Lambda_k^{-1})])``, which is *not* normalised (Jensen's inequality).

    Args:
        n_components: truncation level / number of components ``K``.
        covariance_type: "full", "tied", "diag" or "spherical".
        tol, max_iter, n_init, random_state, warm_start, verbose, verbose_interval: the
            loop settings of :class:`~probpath.likelihood.em.EMEstimator`.
        reg_covar: added to the diagonal of each component's scatter ``S_k``.
        init_params: "kmeans", "k-means++", "random" or "random_from_data" (initial
            responsibilities, as scikit-learn).
        weight_concentration_prior_type: "dirichlet_process" or "dirichlet_distribution".
        weight_concentration_prior: ``alpha_0`` (default ``1 / n_components``).
        mean_precision_prior: ``beta_0`` (default 1).
        mean_prior: ``m_0``, shape ``(d,)`` (default: the data mean).
        degrees_of_freedom_prior: ``nu_0 > d - 1`` (default ``d``).
        covariance_prior: ``W_0^{-1}`` (default: the data covariance, ``ddof=1``), shaped
            as ``covariance_type`` wants: ``(d, d)`` full/tied, ``(d,)`` diag, float
            spherical.
        dtype: "float64" (default) or "float32".
        device: where the fitted tensors live.

    Attributes:
        weights_: ``(K,)`` posterior-mean weights.
        means_: ``(K, d)``; covariances_, precisions_cholesky_: by ``covariance_type``
            (full ``(K, d, d)``, tied ``(d, d)``, diag ``(K, d)``, spherical ``(K,)``);
            ``precisions_`` is derived from ``precisions_cholesky_``.
        weight_concentration_: Dirichlet parameters ``(K,)``, or the Beta parameters of the
            sticks stacked as ``(2, K)`` for the Dirichlet process (scikit-learn: a tuple).
        mean_precision_: ``beta_k``, ``(K,)``; degrees_of_freedom_: ``nu_k``, ``(K,)``
            (a scalar for tied).
        weight_concentration_prior_, mean_precision_prior_, mean_prior_,
        degrees_of_freedom_prior_, covariance_prior_: the priors used.
        converged_, n_iter_, lower_bound_, lower_bounds_: as :class:`EMEstimator`.
        n_features_in_: ``d``.

    Example:
        >>> x = torch.cat([torch.randn(100, 2) - 4, torch.randn(100, 2) + 4]).double()
        >>> bgmm = BayesianGaussianMixture(n_components=5, random_state=0).fit(x)
        >>> int((bgmm.weights_ > 0.1).sum())
        2

    References:
        Bishop, *Pattern Recognition and Machine Learning*, §10.2 (survey ref. [1]);
        Blei & Jordan, "Variational inference for Dirichlet process mixtures", 2006.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="likelihood",
        section="§1.1.5",
        exact_log_prob=True,
        estimator=True,
    )

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
        weight_concentration_prior_type: str = "dirichlet_process",
        weight_concentration_prior: float | None = None,
        mean_precision_prior: float | None = None,
        mean_prior: list[float] | None = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: float | list | None = None,
        random_state: int | None = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        dtype: str | None = None,
        device: str | None = None,
    ) -> None:
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
        self.covariance_type = covariance_type
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.reg_covar = reg_covar
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.dtype = dtype
        self.device = device

    # ------------------------------------------------------------ EM template hooks
    def _check_parameters(self, x: torch.Tensor) -> None:
        n, d = x.shape
        check_positive_int(self.n_components, "n_components")
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_choice(self.init_params, "init_params", INIT_PARAMS)
        check_choice(
            self.weight_concentration_prior_type, "weight_concentration_prior_type", WEIGHT_PRIORS
        )
        reg = self.reg_covar
        if isinstance(reg, bool) or not isinstance(reg, int | float) or not reg >= 0:
            raise ValueError(f"reg_covar must be a non-negative number, got {reg!r}")
        for name in ("weight_concentration_prior", "mean_precision_prior"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        if n < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {n}; pass more samples or decrease "
                "n_components"
            )
        self.n_features_in_ = int(d)
        self.weight_concentration_prior_ = float(
            1.0 / self.n_components
            if self.weight_concentration_prior is None
            else self.weight_concentration_prior
        )
        self.mean_precision_prior_ = float(
            1.0 if self.mean_precision_prior is None else self.mean_precision_prior
        )
        if self.mean_prior is None:
            self.mean_prior_ = x.mean(0)
        else:
            self.mean_prior_ = _float_tensor(self.mean_prior, "mean_prior", x)
            if tuple(self.mean_prior_.shape) != (d,):
                raise ValueError(
                    f"mean_prior must have shape ({d},) to match x, got "
                    f"{tuple(self.mean_prior_.shape)}"
                )
        if self.degrees_of_freedom_prior is None:
            self.degrees_of_freedom_prior_ = float(d)
        elif self.degrees_of_freedom_prior > d - 1:
            self.degrees_of_freedom_prior_ = float(self.degrees_of_freedom_prior)
        else:
            raise ValueError(
                f"The parameter 'degrees_of_freedom_prior' should be greater than {d - 1}, but "
                f"got {self.degrees_of_freedom_prior:.3f}."
            )
        self.covariance_prior_ = self._covariance_prior(x)

    def _covariance_prior(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[1]
        ct = self.covariance_type
        if self.covariance_prior is None:
            if ct in ("full", "tied"):
                return torch.atleast_2d(torch.cov(x.mT, correction=1))
            var = x.var(0, correction=1)
            return var if ct == "diag" else var.mean()
        # not core.validation.as_tensor: np.ascontiguousarray turns a 0-d scalar into 1-d
        prior = _float_tensor(self.covariance_prior, "covariance_prior", x)
        want = {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[ct]
        if tuple(prior.shape) != want:
            raise ValueError(
                f"covariance_prior must have shape {want} for covariance_type={ct!r}, got "
                f"{tuple(prior.shape)}"
            )
        if ct in ("full", "tied"):
            sym = torch.allclose(prior, prior.mT)
            if not sym or bool((torch.linalg.eigvalsh(prior) <= 0).any()):
                raise ValueError("covariance_prior must be symmetric positive definite")
        elif bool((prior <= 0).any()):
            raise ValueError("covariance_prior must be positive")
        return prior

    def _initialize(self, x: torch.Tensor, w: torch.Tensor | None, rng) -> None:
        resp = initial_responsibilities(x, self.n_components, self.init_params, rng)
        self._initialize_from_resp(x, resp if w is None else resp * w[:, None])

    def _initialize_from_resp(self, x: torch.Tensor, resp: torch.Tensor) -> None:
        """Set ``q(pi) q(mu, Lambda)`` from responsibilities ``resp`` (N, K) (an M-step)."""
        self._update_params(x, resp)

    def _update_params(self, x: torch.Tensor, resp: torch.Tensor) -> None:
        nk, xk, sk = _gaussian_statistics(x, resp, self.reg_covar, self.covariance_type)
        self._update_weights(nk)
        self._update_means(nk, xk)
        self._update_precisions(nk, xk, sk)

    def _update_weights(self, nk: torch.Tensor) -> None:
        """q(pi): Dirichlet ``alpha_0 + N_k`` or sticks ``Beta(1 + N_k, alpha_0 + N_{>k})``."""
        a0 = self.weight_concentration_prior_
        if self.weight_concentration_prior_type == "dirichlet_process":
            tail = nk.flip(0).cumsum(0).flip(0)  # N_{>=k}
            after = torch.cat([tail[1:], tail.new_zeros(1)])  # N_{>k}
            self.weight_concentration_ = torch.stack([1.0 + nk, a0 + after])
        else:
            self.weight_concentration_ = a0 + nk

    def _update_means(self, nk: torch.Tensor, xk: torch.Tensor) -> None:
        """``beta_k = beta_0 + N_k``, ``m_k = (beta_0 m_0 + N_k xbar_k) / beta_k`` (PRML 10.60)."""
        b0 = self.mean_precision_prior_
        self.mean_precision_ = b0 + nk
        self.means_ = (b0 * self.mean_prior_ + nk[:, None] * xk) / self.mean_precision_[:, None]

    def _update_precisions(self, nk: torch.Tensor, xk: torch.Tensor, sk: torch.Tensor) -> None:
        """Wishart ``nu_k = nu_0 + N_k`` and ``W_k^{-1}`` (PRML 10.62–63), stored normalised.

        ``covariances_ = W_k^{-1} / nu_k = E[Lambda_k]^{-1}`` (scikit-learn's convention).
        """
        b0, nu0 = self.mean_precision_prior_, self.degrees_of_freedom_prior_
        prior = self.covariance_prior_
        diff = xk - self.mean_prior_
        shrink = b0 / self.mean_precision_  # beta_0 / beta_k
        ct = self.covariance_type
        if ct == "full":
            self.degrees_of_freedom_ = nu0 + nk
            outer = diff[:, :, None] * diff[:, None, :]
            inv_w = prior + nk[:, None, None] * (sk + shrink[:, None, None] * outer)
            self.covariances_ = inv_w / self.degrees_of_freedom_[:, None, None]
        elif ct == "tied":
            k = self.n_components
            self.degrees_of_freedom_ = nu0 + nk.sum() / k
            inv_w = (
                prior + sk * nk.sum() / k + b0 / k * ((nk / self.mean_precision_) * diff.mT) @ diff
            )
            self.covariances_ = inv_w / self.degrees_of_freedom_
        elif ct == "diag":
            self.degrees_of_freedom_ = nu0 + nk
            inv_w = prior + nk[:, None] * (sk + shrink[:, None] * diff * diff)
            self.covariances_ = inv_w / self.degrees_of_freedom_[:, None]
        else:
            self.degrees_of_freedom_ = nu0 + nk
            inv_w = prior + nk * (sk + shrink * (diff * diff).mean(1))
            self.covariances_ = inv_w / self.degrees_of_freedom_
        self.precisions_cholesky_ = precision_cholesky(self.covariances_, ct)

    def _expected_log_weights(self) -> torch.Tensor:
        """``E_q[ln pi_k]``, shape ``(K,)`` (PRML 10.66; stick-breaking for the DP)."""
        dg = torch.special.digamma
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = self.weight_concentration_
            dg_sum = dg(a + b)
            log_rest = (dg(b) - dg_sum).cumsum(0)
            return dg(a) - dg_sum + torch.cat([log_rest.new_zeros(1), log_rest[:-1]])
        alpha = self.weight_concentration_
        return dg(alpha) - dg(alpha.sum())

    def _expected_log_gaussian(self, x: torch.Tensor) -> torch.Tensor:
        """``E_q[ln N(x_n | mu_k, Lambda_k^{-1})]``, shape ``(N, K)`` (PRML 10.64–65)."""
        d = x.shape[1]
        nu = self.degrees_of_freedom_
        log_gauss = _log_gaussian(
            x, self.means_, self.precisions_cholesky_, self.covariance_type, self.mean_prior_
        )
        log_gauss = log_gauss - 0.5 * d * torch.log(torch.as_tensor(nu, dtype=x.dtype))
        i = torch.arange(d, dtype=x.dtype, device=x.device)
        nu_t = torch.as_tensor(nu, dtype=x.dtype, device=x.device)
        log_lambda = d * math.log(2.0) + torch.special.digamma(0.5 * (nu_t[..., None] - i)).sum(-1)
        # with E[Lambda_k] = nu_k W_k = P_k P_k^T: E[ln det Lambda_k] = log_lambda + ln det W_k,
        # E[(x - mu_k)^T Lambda_k (x - mu_k)] = d / beta_k + (x - m_k)^T E[Lambda_k] (x - m_k)
        return log_gauss + 0.5 * (log_lambda - d / self.mean_precision_)

    def _weighted_expected_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self._expected_log_gaussian(x) + self._expected_log_weights()

    def _e_step(self, x: torch.Tensor, w: torch.Tensor | None) -> tuple[float, torch.Tensor]:
        """Update q(Z): ``ln r_nk = E[ln pi_k] + E[ln N(x_n | mu_k, Lambda_k^{-1})] - norm``."""
        weighted = self._weighted_expected_log_prob(x)
        log_norm = torch.logsumexp(weighted, dim=1)
        mean_norm = log_norm.mean() if w is None else (w * log_norm).sum() / w.sum()
        return float(mean_norm), weighted - log_norm[:, None]

    def _m_step(self, x: torch.Tensor, w: torch.Tensor | None, log_resp: torch.Tensor) -> None:
        resp = log_resp.exp()
        self._update_params(x, resp if w is None else resp * w[:, None])

    def _iterate(self, x: torch.Tensor, w: torch.Tensor | None) -> float:
        log_prob_norm, log_resp = self._e_step(x, w)
        self._m_step(x, w, log_resp)
        return self._elbo(log_resp, w)

    def _compute_lower_bound(self, log_resp: torch.Tensor, log_prob_norm: float) -> float:
        """The ELBO (Eq. 14) after the M-step, up to scikit-learn's dropped constants."""
        return self._elbo(log_resp, None)

    def _elbo(self, log_resp: torch.Tensor, w: torch.Tensor | None) -> float:
        """ELBO right after the q(pi) q(mu, Lambda) update for ``q(Z) = exp(log_resp)``.

        ``-sum q ln q - sum_k ln B(W_k, nu_k) - ln C(alpha) - d/2 sum_k ln beta_k`` (PRML
        10.70-10.77 after cancellation), dropping the constants listed in the class docstring.
        """
        d = self.n_features_in_
        x_dtype = log_resp.dtype
        nu = torch.as_tensor(self.degrees_of_freedom_, dtype=x_dtype, device=log_resp.device)
        log_det_chol = (
            log_det_cholesky(self.precisions_cholesky_, self.covariance_type, d)
            - 0.5 * d * nu.log()
        )
        i = torch.arange(d, dtype=x_dtype, device=log_resp.device)
        # ln B(W_k, nu_k) of the Wishart normaliser, without its ln(pi) term (PRML B.79)
        log_wishart_norm = -(
            nu * log_det_chol
            + nu * d * 0.5 * math.log(2.0)
            + torch.lgamma(0.5 * (nu[..., None] - i)).sum(-1)
        )
        if self.covariance_type == "tied":
            log_wishart = self.n_components * log_wishart_norm
        else:
            log_wishart = log_wishart_norm.sum()
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = self.weight_concentration_
            log_norm_weight = -(torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)).sum()
        else:
            alpha = self.weight_concentration_
            log_norm_weight = torch.lgamma(alpha.sum()) - torch.lgamma(alpha).sum()
        resp = log_resp.exp()
        entropy_terms = torch.where(resp > 0, resp * log_resp, 0.0)
        neg_entropy = entropy_terms.sum() if w is None else (w[:, None] * entropy_terms).sum()
        bound = (
            -neg_entropy
            - log_wishart
            - log_norm_weight
            - 0.5 * d * self.mean_precision_.log().sum()
        )
        return float(bound)

    _PARAMS = (
        "weight_concentration_",
        "mean_precision_",
        "means_",
        "degrees_of_freedom_",
        "covariances_",
        "precisions_cholesky_",
    )

    def _get_parameters(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._PARAMS}

    def _set_parameters(self, params: dict[str, Any]) -> None:
        for k, v in params.items():
            setattr(self, k, v)
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = self.weight_concentration_
            frac_rest = b / (a + b)
            sticks = torch.cat([frac_rest.new_ones(1), frac_rest[:-1].cumprod(0)])
            weights = a / (a + b) * sticks
            self.weights_ = weights / weights.sum()
        else:
            self.weights_ = self.weight_concentration_ / self.weight_concentration_.sum()
        self._refresh()

    # ------------------------------------------------------------ fitted model
    def _refresh(self) -> None:
        """``precisions_``: posterior-mean precisions ``E[Lambda_k]`` (layout of covariances_)."""
        if "precisions_cholesky_" in vars(self):
            ct = self.covariance_type
            self.precisions_ = precisions_from_cholesky(self.precisions_cholesky_, ct)

    def _weighted_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """scikit-learn's ``E_q[ln pi_k + ln N(x | mu_k, Lambda_k^{-1})]``, ``(N, K)``.

        Its ``logsumexp`` (``score_samples``) is *not* a normalised density (Jensen's
        inequality); :meth:`log_prob` is the plug-in density instead.
        """
        return self._weighted_expected_log_prob(x)

    def _density_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Plug-in ``ln sum_k weights_k N(x | means_k, covariances_k)`` (normalised)."""
        log_w = self.weights_.clamp_min(torch.finfo(self.weights_.dtype).tiny).log()
        ct = self.covariance_type
        log_joint = _log_gaussian(x, self.means_, self.precisions_cholesky_, ct, self.mean_prior_)
        return torch.logsumexp(log_joint + log_w, dim=1)

    def _draw_from_random_state(self, n: int, rng):
        return self._gaussian_draws_like_sklearn(n, rng)

    def _draw(self, n: int, generator: torch.Generator | None):
        """Components ``z ~ Cat(weights_)``, then ``x ~ N(means_z, covariances_z)``."""
        dt, dev = self.means_.dtype, self.means_.device
        gen_dev = generator.device if generator is not None else dev
        labels = torch.multinomial(
            self.weights_.to(gen_dev), n, replacement=True, generator=generator
        ).to(dev)
        z = randn((n, self.n_features_in_), generator=generator, dtype=dt, device=dev)
        p = self.precisions_cholesky_
        ct = self.covariance_type
        if ct in ("full", "tied"):
            pk = p[labels] if ct == "full" else p.expand(n, -1, -1)
            # Sigma_k = P^{-T} P^{-1}: x = mu + P^{-T} z
            step = torch.linalg.solve_triangular(pk.mT, z[..., None], upper=False)[..., 0]
        else:
            scale = p[labels] if ct == "diag" else p[labels][:, None]
            step = z / scale
        return self.means_[labels] + step, labels

    def load_fitted(self, tensors, state) -> None:
        super().load_fitted(tensors, state)
        self._device, self._fit_dtype = self.means_.device, self.means_.dtype


# ---------------------------------------------------------------- black-box VI
class MeanFieldVI:
    """Black-box mean-field VI with a reparameterised diagonal Gaussian (survey §1.1.5, Eq. 14).

    Approximates the posterior ``p(z | x)`` of a user's model, known only through its
    unnormalised log-density ``log_joint(z) = ln p(x, z)``, by ``q(z) = prod_i N(z_i | m_i,
    s_i^2)`` — the factorised family of §1.1.5 with Gaussian factors. The ELBO of Eq. (14),

        L(q) = E_q[ln p(x, z)] + H[q],   H[q] = sum_i ln s_i + (dim / 2) ln(2 pi e),

    is estimated with ``n_samples`` reparameterised draws ``z = m + s * eps`` (the entropy is
    analytic) and maximised over ``(m, ln s)`` with Adam. The returned ``mean_`` and
    ``std_`` are Polyak–Ruppert averages over the last ``average_last`` fraction of the steps
    (during which the learning rate decays linearly to ``lr / 10``), which removes most of
    the Monte Carlo jitter of the final iterates.

    For a Gaussian posterior ``N(mu, Lambda^{-1})`` the optimum is ``m = mu`` and
    ``s_i^2 = 1 / Lambda_ii`` (not ``(Lambda^{-1})_ii``): mean-field VI gets the mean right
    and under-estimates marginal variances when the posterior is correlated.

    Args:
        log_joint: maps ``z`` of shape ``(S, dim)`` to ``ln p(x, z)`` of shape ``(S,)``,
            differentiably (a PyTorch function of ``z``).
        dim: dimension of ``z``.
        n_samples: Monte Carlo draws per step.
        lr: Adam learning rate.
        steps: optimisation steps.
        average_last: fraction of the final steps whose iterates are averaged (0 keeps the
            last iterate).
        init_mean: initial ``m`` (default zeros), a list or tensor of length ``dim``.
        init_std: initial ``s`` (a positive number).
        dtype: "float64" (default) or "float32".
        device: where ``z`` lives.
        generator: seeds the Monte Carlo draws (a ``torch.Generator``), for reproducible fits.

    Attributes (after ``fit``):
        mean_: ``(dim,)`` posterior means ``m``.
        std_: ``(dim,)`` posterior standard deviations ``s``.
        elbo_history_: ``(steps,)`` Monte Carlo ELBO at every step.

    Example:
        >>> target = torch.tensor([1.0, -2.0], dtype=torch.float64)
        >>> vi = MeanFieldVI(lambda z: -0.5 * ((z - target) ** 2).sum(-1), 2, steps=500,
        ...                  generator=torch.Generator().manual_seed(0)).fit()
        >>> bool(torch.allclose(vi.mean_, target, atol=0.1))
        True
    """

    def __init__(
        self,
        log_joint: Callable[[torch.Tensor], torch.Tensor],
        dim: int,
        *,
        n_samples: int = 16,
        lr: float = 0.05,
        steps: int = 2000,
        average_last: float = 0.5,
        init_mean: Any = None,
        init_std: float = 1.0,
        dtype: str = "float64",
        device: str = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        if not callable(log_joint):
            raise ValueError("log_joint must be a callable mapping z (S, dim) to (S,)")
        self.log_joint = log_joint
        self.dim = check_positive_int(dim, "dim")
        self.n_samples = check_positive_int(n_samples, "n_samples")
        self.steps = check_positive_int(steps, "steps")
        if not (isinstance(lr, int | float) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if not (isinstance(average_last, int | float) and 0 <= average_last < 1):
            raise ValueError(f"average_last must be in [0, 1), got {average_last!r}")
        if not (isinstance(init_std, int | float) and init_std > 0):
            raise ValueError(f"init_std must be a positive number, got {init_std!r}")
        self.lr = float(lr)
        self.average_last = float(average_last)
        self.init_std = float(init_std)
        _, self._dtype = resolve_dtype(dtype)
        self._device = torch.device(device)
        if init_mean is None:
            self.init_mean = torch.zeros(dim, dtype=self._dtype, device=self._device)
        else:
            self.init_mean = check_tensor(
                init_mean, "init_mean", ndim=1, dtype=self._dtype, device=self._device
            )
            if self.init_mean.shape[0] != dim:
                raise ValueError(f"init_mean must have length dim={dim}")
        self.generator = generator

    def _draw(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return randn((n, self.dim), generator=generator, dtype=self._dtype, device=self._device)

    def _log_joint(self, z: torch.Tensor) -> torch.Tensor:
        out = self.log_joint(z)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (z.shape[0],):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"log_joint must return a tensor of shape ({z.shape[0]},) for z of shape "
                f"{tuple(z.shape)}, got {got}; evaluate it row by row over the batch of z"
            )
        return out

    def entropy(self, log_std: torch.Tensor) -> torch.Tensor:
        """Analytic entropy ``sum_i ln s_i + (dim/2) ln(2 pi e)`` of the diagonal Gaussian."""
        return log_std.sum() + 0.5 * self.dim * (1.0 + math.log(2 * math.pi))

    def elbo(
        self,
        mean: torch.Tensor,
        log_std: torch.Tensor,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Monte Carlo ELBO (Eq. 14) at ``(mean, log_std)``, differentiable (scalar)."""
        eps = self._draw(n_samples or self.n_samples, generator)
        z = mean + log_std.exp() * eps  # reparameterisation
        return self._log_joint(z).mean() + self.entropy(log_std)

    def fit(self) -> MeanFieldVI:
        """Maximise the ELBO; returns ``self`` with ``mean_``, ``std_``, ``elbo_history_``."""
        mean = self.init_mean.clone().requires_grad_(True)
        log_std = torch.full_like(mean, math.log(self.init_std)).requires_grad_(True)
        opt = torch.optim.Adam([mean, log_std], lr=self.lr)
        start = int(self.steps * (1 - self.average_last))
        window = max(self.steps - start, 1)
        avg_mean = torch.zeros_like(mean)
        avg_log_std = torch.zeros_like(mean)
        history = torch.empty(self.steps, dtype=self._dtype)
        for step in range(self.steps):
            opt.zero_grad(set_to_none=True)
            elbo = self.elbo(mean, log_std, generator=self.generator)
            if not torch.isfinite(elbo):
                raise FloatingPointError(
                    f"the ELBO became {float(elbo)} at step {step}; lower lr, start closer "
                    "(init_mean / init_std), or check log_joint for overflow"
                )
            (-elbo).backward()
            opt.step()
            history[step] = elbo.detach()
            if step >= start:
                k = step - start + 1
                # decay lr linearly to lr / 10 over the averaging window: the average then
                # carries less of constant-step SGD's O(lr) bias in ln s
                for group in opt.param_groups:
                    group["lr"] = self.lr * (1 - 0.9 * k / window)
                with torch.no_grad():
                    avg_mean += (mean - avg_mean) / k
                    avg_log_std += (log_std - avg_log_std) / k
        if self.steps - start == 0:  # average_last = 0: keep the last iterate
            avg_mean, avg_log_std = mean.detach(), log_std.detach()
        self.mean_ = avg_mean.detach()
        self.std_ = avg_log_std.detach().exp()
        self.elbo_history_ = history
        return self

    def sample_posterior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` samples of ``z`` from the fitted ``q``; shape ``(n, dim)``."""
        n = check_positive_int(n, "n")
        if not hasattr(self, "mean_"):
            raise RuntimeError("this MeanFieldVI is not fitted yet; call .fit() first")
        return self.mean_ + self.std_ * self._draw(n, generator)

    def log_prob(self, z) -> torch.Tensor:
        """``ln q(z)`` of the fitted guide, shape ``(batch,)``."""
        if not hasattr(self, "mean_"):
            raise RuntimeError("this MeanFieldVI is not fitted yet; call .fit() first")
        z = check_tensor(z, "z", event_shape=(self.dim,), dtype=self._dtype, device=self._device)
        u = (z - self.mean_) / self.std_
        return (-0.5 * u * u - self.std_.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
