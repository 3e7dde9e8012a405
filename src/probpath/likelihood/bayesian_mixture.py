"""The variational Bayesian Gaussian mixture (survey §1.1.5; Bishop PRML §10.2).

Mean-field coordinate-ascent VI for a Gaussian mixture with a Dirichlet-distribution or
Dirichlet-process (stick-breaking) prior on the weights and a Normal–Wishart prior on each
component's mean and precision. It is *variational EM* on the shared loop of
:class:`~probpath.likelihood.em.EMEstimator`: the E-step hook updates ``q(Z)``
(responsibilities), the M-step hook ``q(pi) q(mu, Lambda)``, and ``_compute_lower_bound``
returns the ELBO of Eq. (14), which never decreases. Parameter names, update order and the
ELBO's constant conventions follow scikit-learn's ``BayesianGaussianMixture``, so both give
the same numbers from the same initial responsibilities. The covariance types are the strategy
objects of :mod:`probpath.likelihood.covariance`, shared with the EM mixture.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from probpath.core.model import Capabilities
from probpath.core.validation import check_choice, check_positive_int
from probpath.likelihood._mixture_api import MixtureAPI
from probpath.likelihood._mixture_tools import INIT_PARAMS, initial_responsibilities
from probpath.likelihood.covariance import COVARIANCE_TYPES, Covariance, covariance_type
from probpath.likelihood.em import EMEstimator
from probpath.likelihood.gaussian import randn

__all__ = ["BayesianGaussianMixture", "WEIGHT_PRIORS"]

WEIGHT_PRIORS = ("dirichlet_process", "dirichlet_distribution")


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
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(2 * 100, 2, generator=g, dtype=torch.float64)
        >>> x = torch.cat([z[:100] - 4, z[100:] + 4])
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
        ct, cov = self.covariance_type, self._cov
        if self.covariance_prior is None:
            return cov.default_prior(x)
        # not core.validation.as_tensor: np.ascontiguousarray turns a 0-d scalar into 1-d
        prior = _float_tensor(self.covariance_prior, "covariance_prior", x)
        want = cov.prior_shape(d)
        if tuple(prior.shape) != want:
            raise ValueError(
                f"covariance_prior must have shape {want} for covariance_type={ct!r}, got "
                f"{tuple(prior.shape)}"
            )
        if cov.matrix:
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
        # weighted statistics (N_k, xbar_k, S_k) of PRML Eqs. 10.51–10.53
        nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
        xk = resp.mT @ x / nk[:, None]
        sk = self._cov.weighted_scatter(x, resp, nk, xk, self.reg_covar)
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
        self.degrees_of_freedom_, self.covariances_ = self._cov.wishart(
            prior, nk, sk, diff, shrink, b0, nu0, self.mean_precision_
        )
        self.precisions_cholesky_ = self._cov.precision_cholesky(self.covariances_)

    @property
    def _cov(self) -> Covariance:
        """The covariance type's strategy object (shared with the EM mixture)."""
        return covariance_type(self.covariance_type)

    def _log_gaussian(self, x: torch.Tensor) -> torch.Tensor:
        """``ln N(x_n | means_k, (P_k P_k^T)^{-1})`` ``(N, K)``, computed about ``mean_prior_``
        (a point near the data) so the quadratic features do not lose precision."""
        c = self.mean_prior_
        return self._cov.log_prob(x - c, self.means_ - c, self.precisions_cholesky_)

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
        log_gauss = self._log_gaussian(x)
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

    def _compute_lower_bound(
        self, log_resp: torch.Tensor, log_prob_norm: float, w: torch.Tensor | None = None
    ) -> float:
        """The ELBO (Eq. 14) right after the q(pi) q(mu, Lambda) update for ``q(Z) =
        exp(log_resp)``, up to scikit-learn's dropped constants.

        ``-sum q ln q - sum_k ln B(W_k, nu_k) - ln C(alpha) - d/2 sum_k ln beta_k`` (PRML
        10.70-10.77 after cancellation), dropping the constants listed in the class docstring.
        """
        d = self.n_features_in_
        x_dtype = log_resp.dtype
        nu = torch.as_tensor(self.degrees_of_freedom_, dtype=x_dtype, device=log_resp.device)
        log_det_chol = self._cov.log_det(self.precisions_cholesky_, d) - 0.5 * d * nu.log()
        i = torch.arange(d, dtype=x_dtype, device=log_resp.device)
        # ln B(W_k, nu_k) of the Wishart normaliser, without its ln(pi) term (PRML B.79)
        log_wishart_norm = -(
            nu * log_det_chol
            + nu * d * 0.5 * math.log(2.0)
            + torch.lgamma(0.5 * (nu[..., None] - i)).sum(-1)
        )
        if self._cov.shared:
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
            self.precisions_ = self._cov.precisions(self.precisions_cholesky_)

    def _weighted_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """scikit-learn's ``E_q[ln pi_k + ln N(x | mu_k, Lambda_k^{-1})]``, ``(N, K)``.

        Its ``logsumexp`` (``score_samples``) is *not* a normalised density (Jensen's
        inequality); :meth:`log_prob` is the plug-in density instead.
        """
        return self._weighted_expected_log_prob(x)

    def _density_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Plug-in ``ln sum_k weights_k N(x | means_k, covariances_k)`` (normalised)."""
        log_w = self.weights_.clamp_min(torch.finfo(self.weights_.dtype).tiny).log()
        log_joint = self._log_gaussian(x)
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
        step = self._cov.draw(z, labels, self.precisions_cholesky_)
        return self.means_[labels] + step, labels

    def load_fitted(self, tensors, state) -> None:
        super().load_fitted(tensors, state)
        self._device, self._fit_dtype = self.means_.device, self.means_.dtype
