"""The covariance-type strategy interface and the algebra full and tied share; the concrete
types and their registry are in :mod:`probpath.likelihood.covariance`."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["Covariance", "MatrixCovariance", "vech", "unvech", "eye_like", "triu_pairs"]

_CHOLESKY_HELP = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
    "the number of components, increase reg_covar, or scale the input data."
)


def triu_pairs(d: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    iu = torch.triu_indices(d, d, device=device)
    return iu[0], iu[1]


def vech(m: torch.Tensor) -> torch.Tensor:
    """The upper triangle (``i <= j``, row by row) of ``(..., d, d)`` as ``(..., d(d+1)/2)``."""
    i, j = triu_pairs(m.shape[-1], m.device)
    return m[..., i, j]


def unvech(v: torch.Tensor, d: int) -> torch.Tensor:
    """The symmetric ``(..., d, d)`` matrices whose upper triangles are ``v``."""
    i, j = triu_pairs(d, v.device)
    out = v.new_zeros(*v.shape[:-1], d, d)
    out[..., i, j] = v
    out[..., j, i] = v
    return out


def eye_like(like: torch.Tensor, d: int) -> torch.Tensor:
    return torch.eye(d, dtype=like.dtype, device=like.device)


class Covariance:
    """One covariance type: its layout, densities, M-steps, parameter count and priors.

    Attributes:
        name: "full", "tied", "diag" or "spherical".
        matrix: whether covariances are ``(.., d, d)`` matrices (full, tied).
        shared: whether one covariance serves all components (tied).
    """

    name = ""
    matrix = False
    shared = False

    # ------------------------------------------------------------------ layout
    def shape(self, k: int, d: int) -> tuple[int, ...]:
        """Shape of the covariances (and precisions) for ``K = k`` components."""
        raise NotImplementedError(f"{type(self).__name__} must define shape()")

    def n_parameters(self, k: int, d: int) -> int:
        """Free covariance parameters (used by BIC / AIC)."""
        raise NotImplementedError(f"{type(self).__name__} must define n_parameters()")

    def unit(self, d: int, like: torch.Tensor) -> torch.Tensor | float:
        """A placeholder covariance of one component (identity)."""
        return 1.0

    # ------------------------------------------------------- precision Cholesky
    def precision_cholesky(self, covariances: torch.Tensor) -> torch.Tensor:
        """``U`` with ``U U^T = Sigma^{-1}`` (``1/sqrt(var)`` for diag / spherical).

        Raises:
            ValueError: a covariance is not positive definite; the message says to decrease
                ``n_components``, increase ``reg_covar`` or scale the data.
        """
        if bool((covariances <= 0).any()) or not bool(torch.isfinite(covariances).all()):
            raise ValueError(f"{_CHOLESKY_HELP} (a variance is non-positive)")
        return covariances.rsqrt()

    def from_precisions(self, precisions: torch.Tensor) -> torch.Tensor:
        """``U`` from user-given precisions."""
        if bool((precisions <= 0).any()):
            raise ValueError("precisions_init must be positive; check it")
        return precisions.sqrt()

    def precisions(self, prec_chol: torch.Tensor) -> torch.Tensor:
        """``P = U U^T`` (``U^2`` for diag / spherical)."""
        return prec_chol**2

    def covariances(self, prec_chol: torch.Tensor) -> torch.Tensor:
        """``Sigma = (U U^T)^{-1}`` (``1 / U^2``)."""
        return prec_chol.pow(-2)

    def log_det(self, prec_chol: torch.Tensor, d: int) -> torch.Tensor:
        """``ln det U = -½ ln det Sigma`` per component (a scalar for tied)."""
        raise NotImplementedError(f"{type(self).__name__} must define log_det()")

    # ------------------------------------------------------------- log-density
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Sufficient statistics ``T(x)`` ``(n, F)``: ``[quadratic, x, 1]``."""
        raise NotImplementedError(f"{type(self).__name__} must define features()")

    def quadratic_width(self, d: int) -> int:
        """Columns of the quadratic part of :meth:`features` (``S1`` starts there)."""
        raise NotImplementedError(f"{type(self).__name__} must define quadratic_width()")

    def _quadratic_eta(self, prec: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must define _quadratic_eta()")

    def _p_mu(self, means: torch.Tensor, prec: torch.Tensor) -> torch.Tensor:
        return means * prec

    def natural_parameters(self, means: torch.Tensor, prec_chol: torch.Tensor) -> torch.Tensor:
        """``eta`` ``(K, F)`` with ``ln N(x | mu_k, Sigma_k) = T(x) . eta_k`` (+ tied term).

        Args:
            means: ``(K, d)``, in the frame in which ``T(x)`` is computed.
            prec_chol: precision Cholesky factors.
        """
        k, d = means.shape
        prec = self.precisions(prec_chol)
        p_mu = self._p_mu(means, prec)
        const = -0.5 * (d * math.log(2 * math.pi) + (means * p_mu).sum(-1))
        const = const + self.log_det(prec_chol, d)
        return torch.cat([*self._quadratic_eta(prec), p_mu, const.expand(k)[:, None]], dim=1)

    def shared_quadratic(self, x: torch.Tensor, prec_chol: torch.Tensor) -> torch.Tensor | None:
        """The term ``-½ x^T P x`` common to all components (tied), shape ``(n,)``."""
        return None

    def log_prob(self, x: torch.Tensor, means: torch.Tensor, prec_chol: torch.Tensor):
        """``ln N(x_n | mu_k, Sigma_k)`` ``(n, K)`` (``x`` and ``means`` in one frame)."""
        out = self.features(x) @ self.natural_parameters(means, prec_chol).mT
        shared = self.shared_quadratic(x, prec_chol)
        return out if shared is None else out + shared[:, None]

    def draw(self, z: torch.Tensor, labels: torch.Tensor, prec_chol: torch.Tensor):
        """``y`` with covariance ``Sigma_{labels}`` from standard normal ``z`` ``(n, d)``."""
        scale = prec_chol[labels]
        return z / (scale if scale.ndim == 2 else scale[:, None])

    def draw_numpy(self, rng, means, covariances, counts) -> list:
        """scikit-learn's draws: ``counts[k]`` points of component ``k`` in turn (NumPy)."""
        d = means.shape[1]
        return [
            m + rng.standard_normal(size=(int(s), d)) * np.sqrt(c)
            for m, c, s in zip(means, covariances, counts)
        ]

    # ------------------------------------------------------------------ M-step
    def _scatter(self, s2, s1, nk, means, xx):
        raise NotImplementedError(f"{type(self).__name__} must define _scatter()")

    def _outer(self, delta: torch.Tensor) -> torch.Tensor:
        return delta * delta

    def _psi(self, psi: torch.Tensor) -> torch.Tensor:
        return torch.diagonal(psi)

    def _normalise(self, m, nk, extra_dof, reg_covar, d):
        return m / (nk + extra_dof)[:, None] + reg_covar

    def scatter(
        self,
        stats: torch.Tensor,
        nk: torch.Tensor,
        means: torch.Tensor,
        *,
        xx: torch.Tensor | None = None,
        psi: torch.Tensor | None = None,
        kappa: float = 0.0,
        mean_prior: torch.Tensor | None = None,
        extra_dof: float = 0.0,
        reg_covar: float = 0.0,
    ) -> torch.Tensor:
        """M-step covariances (MLE, or the MAP mode under a Normal-inverse-Wishart prior).

        With ``S2_k = Σ r x x^T``, ``S1_k = Σ r x`` (from ``stats = resp^T T(x)``) and the new
        means ``mu_k``, the scatter is ``M_k = psi + S2_k - S1_k mu_k^T - mu_k S1_k^T +
        N_k mu_k mu_k^T + kappa (mu_k - m0)(mu_k - m0)^T`` and ``Sigma_k = M_k / (N_k +
        extra_dof) + reg_covar I`` (tied: ``Σ_k M_k`` with ``psi`` once over ``N +
        extra_dof``; diag: the diagonal of ``M_k``; spherical: its mean). Without a prior
        (``psi = 0, kappa = 0, extra_dof = 0``) this is the maximum-likelihood M-step.

        Args:
            stats: ``resp^T T(x)`` ``(K, F)``; nk: ``(K,)``; means: ``(K, d)`` new means.
            xx: tied only: ``Σ_n w_n x_n x_n^T`` ``(d, d)``.
            psi: inverse-Wishart scale ``(d, d)`` or ``None``; kappa, mean_prior: the prior
                precision and mean ``m0`` of the means; extra_dof: the MAP mode's offset.
        """
        d = means.shape[1]
        q = self.quadratic_width(d)
        m = self._scatter(stats[:, :q], stats[:, q : q + d], nk, means, xx)
        if kappa > 0:
            m = m + kappa * self._outer(means - mean_prior)
        if psi is not None:
            m = m + self._psi(psi)
        return self._normalise(m, nk, extra_dof, reg_covar, d)

    # -------------------------------------------------------- prior terms (MAP)
    def trace(self, prec: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """``tr(Psi P_k)`` per covariance (``(K,)``; ``(1,)`` for tied)."""
        return prec * torch.diagonal(psi).sum()

    def mahalanobis(self, delta: torch.Tensor, prec: torch.Tensor) -> torch.Tensor:
        """``delta_k^T P_k delta_k``, ``(K,)``."""
        return (delta * delta).sum(-1) * prec

    # ------------------------------------------------- variational (PRML §10.2)
    def weighted_scatter(self, x, resp, nk, xk, reg_covar: float) -> torch.Tensor:
        """``S_k`` of PRML Eq. 10.53 (``(K, ...)`` in this type's layout) plus ``reg_covar``."""
        avg_x2 = resp.mT @ (x * x) / nk[:, None]
        return (avg_x2 - xk * xk + reg_covar).mean(1)

    def wishart(self, prior, nk, sk, diff, shrink, b0: float, nu0: float, beta):
        """``(nu_k, W_k^{-1} / nu_k)`` of PRML Eqs. 10.62–10.63 (``covariances_``)."""
        dof = nu0 + nk
        return dof, (prior + nk * (sk + shrink * (diff * diff).mean(1))) / dof

    def default_prior(self, x: torch.Tensor) -> torch.Tensor:
        """scikit-learn's default ``covariance_prior``: the data's (co)variance."""
        return x.var(0, correction=1).mean()

    def prior_shape(self, d: int) -> tuple[int, ...]:
        """Shape of a user-given ``covariance_prior``."""
        return ()


class MatrixCovariance(Covariance):
    """Shared algebra of the matrix types (full, tied)."""

    matrix = True

    def unit(self, d, like):
        return eye_like(like, d)

    def precision_cholesky(self, covariances):
        chol, info = torch.linalg.cholesky_ex(covariances)
        if bool((info != 0).any()):
            bad = torch.nonzero(info.reshape(-1)).reshape(-1).tolist()
            raise ValueError(f"{_CHOLESKY_HELP} (non-positive-definite component(s): {bad})")
        eye = eye_like(covariances, covariances.shape[-1]).expand_as(covariances)
        inv = torch.linalg.solve_triangular(chol, eye, upper=False)  # L^{-1}
        return inv.transpose(-1, -2).contiguous()  # U = L^{-T}

    def from_precisions(self, precisions):
        # U = J chol(J P J) J with J the exchange matrix
        chol, info = torch.linalg.cholesky_ex(precisions.flip(-1, -2))
        if bool((info != 0).any()):
            raise ValueError("precisions_init must hold symmetric positive-definite matrices")
        return chol.flip(-1, -2).contiguous()

    def precisions(self, prec_chol):
        return prec_chol @ prec_chol.transpose(-1, -2)

    def covariances(self, prec_chol):
        eye = eye_like(prec_chol, prec_chol.shape[-1]).expand_as(prec_chol)
        u_inv = torch.linalg.solve_triangular(prec_chol, eye, upper=True)
        return u_inv.transpose(-1, -2) @ u_inv

    def log_det(self, prec_chol, d):
        return torch.log(torch.diagonal(prec_chol, dim1=-2, dim2=-1)).sum(-1)

    def _p_mu(self, means, prec):
        k, d = means.shape
        return (prec.expand(k, d, d) @ means.unsqueeze(-1)).squeeze(-1)

    def _psi(self, psi):
        return psi

    def default_prior(self, x):
        return torch.atleast_2d(torch.cov(x.mT, correction=1))

    def prior_shape(self, d):
        return (d, d)
