"""The Gaussian mixture fitted by EM, with scikit-learn's parameters (Survey §1.1.2).

Built on :class:`~probpath.likelihood.mixture_em.MixtureEM` (the chunked, fused EM pass) and
the covariance strategy objects of :mod:`probpath.likelihood.covariance`, which the
variational mixture shares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probpath.core.validation import check_choice
from probpath.likelihood._mixture_tools import check_array_parameter, responsibility_sums
from probpath.likelihood._screened import Screen, ScreenPolicy, screened_labels, screened_pass
from probpath.likelihood.covariance import COVARIANCE_TYPES, Covariance, covariance_type, vech
from probpath.likelihood.mixture_em import MixtureEM

__all__ = ["GaussianMixture"]

_PRIOR_KEYS = {"weight_concentration", "mean_precision", "mean", "degrees_of_freedom", "covariance"}


class GaussianMixture(MixtureEM):
    """Gaussian mixture fitted by EM, with scikit-learn's parameters (Survey §1.1.2).

    ``p(x) = Σ_k π_k N(x | mu_k, Sigma_k)``; the E-step is one matrix product in
    exponential-family form (see :mod:`probpath.likelihood.covariance`); the data
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
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(2 * 200, 2, generator=g, dtype=torch.float64)
        >>> x = torch.cat([z[:200] - 3, z[200:] + 3])
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
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
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
            p = check_array_parameter(self.precisions_init, name, self._cov.shape(k, d))
            if not self._cov.matrix:
                if (p <= 0).any():
                    raise ValueError(f"'{name}' should be positive")
            else:
                for m in p.reshape(-1, d, d):
                    if not (np.allclose(m, m.T) and (np.linalg.eigvalsh(m) > 0).all()):
                        raise ValueError(f"'{name}' should be symmetric, positive-definite")

    @property
    def _cov(self) -> Covariance:
        """The covariance type's strategy object."""
        return covariance_type(self.covariance_type)

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
    # instead of the ``d (d + 1) / 2`` quadratic features (see ``Covariance.whitening``)
    _QUADRATIC_FEATURES_MAX_D = 16

    def _whitened(self) -> bool:
        return self.covariance_type == "full" and (
            self.n_features_in_ > self._QUADRATIC_FEATURES_MAX_D
        )

    def _screen(self, directions: int | None = None) -> Screen | None:
        """The screened E-step (``_screened``) for float64 whitened fits with ``K >= 3`` on a
        CPU (on a GPU the dense product is cheap and the screen's gathers synchronise)."""
        if not (self._whitened() and self.means_.dtype == torch.float64):
            return None
        if self.means_.device.type != "cpu":
            return None
        if self.n_components < 3:
            return None
        args = (self.means_, self.precisions_cholesky_, self._whitening)
        return Screen(self.center_, *args, torch.log(self.weights_), directions)

    def _pass(self, x: torch.Tensor, w: torch.Tensor | None, cache: bool = False):
        # skips the pairs with responsibility < e^-50, to round-off the dense pass
        policy = vars(self).setdefault("_screen_policy", ScreenPolicy())
        screen = self._screen(policy.directions) if policy.use() else None
        if screen is None:
            return super()._pass(x, w, cache)
        return screened_pass(x, w, screen, policy, self._workspace)

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        screen = self._screen()
        if screen is None:
            return super()._labels(x)
        self._validate_values(x, "X")
        in_fit = "_buffers" in vars(self)  # a fit's workspace; otherwise one for this call
        try:
            return screened_labels(x, screen, self._workspace)
        finally:
            if not in_fit:
                vars(self).pop("_buffers", None)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self._whitened():
            return x - self.center_
        return self._cov.features(x - self.center_)

    def _rows_per_chunk(self, width: int) -> int:
        if self.chunk_size is None and self._whitened():
            # the (rows, K d) scratch of the whitened E-step stays in the cache (~2 MiB)
            return max(64, (1 << 18) // (self.n_components * width))
        return super()._rows_per_chunk(width)

    # ------------------------------------------------------------- component math
    def _refresh(self) -> None:
        if "precisions_cholesky_" not in vars(self):
            return
        cov, u = self._cov, self.precisions_cholesky_
        self.precisions_ = cov.precisions(u)
        means_c = self.means_ - self.center_
        if self._whitened():
            self._whitening = cov.whitening(means_c, u)
        else:
            self._eta = cov.natural_parameters(means_c, u)

    def _log_joint(self, f: torch.Tensor) -> torch.Tensor:
        if self._whitened():
            out = torch.log(self.weights_)[:, None].repeat(1, f.shape[0])
            return self._whitened_log_joint_t(f, out, fresh=True).T
        out = torch.addmm(torch.log(self.weights_), f, self._eta.T)  # one GEMM
        shared = self._shared_term(f)
        return out if shared is None else out + shared[:, None]

    def _shared_term(self, f: torch.Tensor) -> torch.Tensor | None:
        """The component-independent ``-½ x^T P x`` (tied), ``(n,)``; ``None`` otherwise."""
        return self._cov.shared_quadratic(f[:, : self.n_features_in_], self.precisions_cholesky_)

    def _whitened_log_joint_t(
        self, f: torch.Tensor, out: torch.Tensor, fresh: bool = False
    ) -> torch.Tensor:
        """``out += ln p(x | θ_k)`` (``(K, n)``); the scratch is a fit workspace unless
        ``fresh`` (prediction keeps no buffers)."""
        shape = (f.shape[0], self.n_components * f.shape[1])
        work = f.new_empty(shape) if fresh else self._workspace(shape, f, 3)
        return self._cov.whitened_log_prob_t(f, self._whitening, out=out, work=work)

    def _log_joint_t(self, f: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self._whitened():
            out.copy_(torch.log(self.weights_)[:, None].expand_as(out))
            return self._whitened_log_joint_t(f, out)
        torch.addmm(torch.log(self.weights_)[:, None], self._eta, f.T, out=out)  # (K, n)
        shared = self._shared_term(f)
        return out if shared is None else out.add_(shared)

    def _sufficient_statistics(self, f: torch.Tensor, resp: torch.Tensor) -> dict:
        if self._whitened():  # S2 (K, d, d) and S1 (K, d) instead of resp^T T(x)
            work = self._workspace((f.shape[0], self.n_components * f.shape[1]), f, 3)
            return {"S2": self._cov.second_moments(f, resp, work), "S1": resp.T @ f}
        stats = {"T": responsibility_sums(resp, f)}
        if self._cov.shared:
            xc = f[:, : self.n_features_in_]
            stats["xx"] = responsibility_sums(xc * resp.sum(1, keepdim=True), xc)
        return stats

    def _update_components(self, stats: dict, nk: torch.Tensor) -> None:
        d = self.n_features_in_
        if "S2" in stats:  # the whitened full path: the same layout as resp^T T(x)
            t = torch.cat([vech(stats["S2"]), stats["S1"]], dim=1)
        else:
            t = stats["T"]
        offset = self._cov.quadratic_width(d)
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
                extra += self.n_components if self._cov.shared else 1
        self.covariances_ = self._cov.scatter(
            t,
            nk,
            means_c,
            xx=stats.get("xx"),
            psi=psi,
            kappa=kappa,
            mean_prior=m0,
            extra_dof=extra,
            reg_covar=float(self.reg_covar),
        )
        self.means_ = means_c + self.center_
        empty = getattr(self, "_empty_components", [])
        if empty and not self._cov.shared:  # placeholders until re-seeded
            self.covariances_[empty] = self._cov.unit(d, t)
        self.precisions_cholesky_ = self._cov.precision_cholesky(self.covariances_)
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
        d = self.n_features_in_
        pr = self._prior_values(d)
        lp = (pr["alpha"] - 1) * torch.log(self.weights_).sum()
        cov = self._cov
        log_det_prec = 2 * cov.log_det(self.precisions_cholesky_, d)  # -ln|Σ|
        n_cov = 1 if cov.shared else self.n_components
        log_det_prec = log_det_prec.expand(n_cov) if log_det_prec.ndim else log_det_prec[None]
        prec = self.precisions_
        if pr["psi"] is not None:
            a = pr["nu"] + d + 1
            lp = lp + 0.5 * a * log_det_prec.sum()
            lp = lp - 0.5 * cov.trace(prec, pr["psi"]).sum()
        if pr["kappa"] > 0:
            m0 = pr["mean"] if pr["mean"] is not None else self.center_
            delta = self.means_ - m0
            maha = cov.mahalanobis(delta, prec)
            per = log_det_prec.sum() if cov.shared else log_det_prec
            lp = lp + 0.5 * (per.sum() if not cov.shared else self.n_components * per)
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
            prec = self._as_param(self.precisions_init, f"{ct} precision", self._cov.shape(k, d))
            self.precisions_cholesky_ = self._cov.from_precisions(prec)
            self.covariances_ = self._cov.covariances(self.precisions_cholesky_)
        self._refresh()

    def _component_parameters(self) -> dict[str, torch.Tensor]:
        return {
            "means_": self.means_,
            "covariances_": self.covariances_,
            "precisions_cholesky_": self.precisions_cholesky_,
            "center_": self.center_,
        }

    def _reseed_components(self, empty: list[int], points: torch.Tensor) -> None:
        means = self.means_.clone()
        means[empty] = points
        cov = self.covariances_.clone()
        if not self._cov.shared:
            keep = [k for k in range(self.n_components) if k not in empty]
            pooled = cov[keep].mean(0) if keep else cov.mean(0)
            cov[empty] = pooled
        self.means_, self.covariances_ = means, cov
        self.precisions_cholesky_ = self._cov.precision_cholesky(cov)
        self._refresh()

    def _n_component_parameters(self) -> int:
        d = self.n_features_in_
        return self._cov.n_parameters(self.n_components, d) + self.n_components * d

    def _draw_from_random_state(self, n: int, rng):
        return self._gaussian_draws_like_sklearn(n, rng)

    def _sample_components(self, labels: torch.Tensor, generator) -> torch.Tensor:
        dev = labels.device
        d = self.n_features_in_
        z = torch.randn(labels.shape[0], d, generator=generator, dtype=self._dtype, device=dev)
        y = self._cov.draw(z, labels, self.precisions_cholesky_.to(dev))
        return self.means_.to(dev)[labels] + y
