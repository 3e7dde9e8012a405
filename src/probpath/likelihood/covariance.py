"""Covariance types of Gaussian mixtures as strategy objects (Survey §1.1.2, §1.1.5).

One object per type, shared by the EM mixture (:mod:`probpath.likelihood.gaussian_mixture`)
and the variational mixture (:mod:`probpath.likelihood.bayesian_mixture`); look one up with
:func:`covariance_type`. Shapes (``K`` components, ``d`` features), as in scikit-learn:

* ``"full"``: covariances and precision Cholesky factors ``(K, d, d)``;
* ``"tied"``: one ``(d, d)`` matrix shared by all components;
* ``"diag"``: ``(K, d)`` variances; ``"spherical"``: ``(K,)`` variances.

The precision Cholesky factor ``U`` is upper triangular with ``P = U U^T``, so
``(x - mu)^T P (x - mu) = ||(x - mu)^T U||^2`` (diag / spherical: ``U = 1 / sqrt(var)``).

The component log-density is written in exponential-family form,
``ln N(x | mu_k, Sigma_k) = T(x) . eta_k`` (:meth:`Covariance.features`,
:meth:`Covariance.natural_parameters`; tied adds the shared ``-½ x^T P x``), so the E-step is
one matrix product and the M-step's statistics ``resp^T T(x)`` another.
"""

from __future__ import annotations

import math

import torch

from probpath.likelihood._blas import native, symmetrize_upper_, syrk_
from probpath.likelihood._covariance_base import (
    Covariance,
    MatrixCovariance,
    eye_like,
    triu_pairs,
    unvech,
    vech,
)

__all__ = ["Covariance", "COVARIANCE_TYPES", "covariance_type", "vech", "unvech"]


class _Full(MatrixCovariance):
    name = "full"

    def shape(self, k, d):
        return (k, d, d)

    def n_parameters(self, k, d):
        return k * d * (d + 1) // 2

    def features(self, x):
        n, d = x.shape
        f = d * (d + 1) // 2
        out = torch.empty(n, f + d + 1, dtype=x.dtype, device=x.device)
        col = 0
        for i in range(d):  # row i of the upper triangle: x_i * x_j, j >= i
            torch.mul(x[:, i : i + 1], x[:, i:], out=out[:, col : col + d - i])
            col += d - i
        out[:, f : f + d] = x
        out[:, -1] = 1
        return out

    def quadratic_width(self, d):
        return d * (d + 1) // 2

    def _quadratic_eta(self, prec):
        i, j = triu_pairs(prec.shape[-1], prec.device)
        return [-0.5 * prec[:, i, j] * torch.where(i == j, 1.0, 2.0).to(prec.dtype)]

    def whitening(self, means: torch.Tensor, prec_chol: torch.Tensor):
        """The E-step in whitened form: ``ln N(x | mu_k, Sigma_k) = c_k - ½ ||x U_k - b_k||^2``.

        ``(x - mu_k)^T P_k (x - mu_k) = ||x^T U_k - b_k||^2`` with ``b_k = mu_k^T U_k``; the
        ``K`` factors side by side make it one ``(n, d) @ (d, K d)`` product (scikit-learn
        does one component at a time). For large ``d`` this is cheaper than the ``d (d + 1)
        / 2`` quadratic :meth:`features`, rebuilt for every chunk when they do not fit in
        memory.

        Returns:
            ``u_stack`` ``(d, K d)`` (column block ``k`` is ``U_k``), ``b`` ``(K d,)`` and
            ``c`` ``(K,)`` with ``c_k = ln det U_k - (d / 2) ln 2 pi``.
        """
        k, d = means.shape
        u_stack = prec_chol.permute(1, 0, 2).reshape(d, k * d).contiguous()
        b = (means[:, None, :] @ prec_chol).reshape(k * d)
        return u_stack, b, self.log_det(prec_chol, d) - 0.5 * d * math.log(2 * math.pi)

    @staticmethod
    def whitened_log_prob_t(x, whitening, out: torch.Tensor, work: torch.Tensor):
        """``out[k, n] += ln N(x_n | mu_k, Sigma_k)`` from :meth:`whitening`'s terms.

        Args:
            x: ``(n, d)``; out: ``(K, n)``; work: scratch of ``n K d`` elements.
        """
        u_stack, b, c = whitening
        n, k = x.shape[0], c.shape[0]
        y = torch.addmm(b, x, u_stack, beta=-1, out=work.view(n, -1))  # x U_k - b_k
        sq = y.square_().view(n, k, -1).sum(2)  # (n, K) squared Mahalanobis distances
        return out.add_(c[:, None]).sub_(sq.T, alpha=0.5)

    @staticmethod
    def second_moments(x: torch.Tensor, resp: torch.Tensor, work: torch.Tensor | None = None):
        """``S2_k = Σ_n γ_nk x_n x_n^T`` ``(K, d, d)``: on a CPU ``K`` symmetric updates with
        ``sqrt(γ_nk) x_n`` (:mod:`~probpath.likelihood._blas`), elsewhere one ``(d, n) @ (n,
        K d)`` product.

        Args:
            x: ``(n, d)``; resp: ``(n, K)`` (a transposed view is fine); work: optional
                contiguous scratch (``n d`` elements on a CPU, ``n K d`` elsewhere; a
                smaller one is replaced).
        """
        n, d = x.shape
        k = resp.shape[1]
        native_path = native(x)  # per component a symmetric rank-n update: half the flops
        shape = (n, d) if native_path else (n, k, d)
        if work is None or work.numel() < math.prod(shape):
            work = x.new_empty(shape)
        w = work.reshape(-1)[: math.prod(shape)].view(shape)
        if native_path:
            root = resp.sqrt()
            s2 = x.new_zeros(k, d, d)
            for j in range(k):
                syrk_(s2[j], torch.mul(x, root[:, j, None], out=w))
            return symmetrize_upper_(s2)
        torch.mul(resp[:, :, None], x[:, None, :], out=w)
        return (x.T @ w.view(n, -1)).view(d, k, d).transpose(0, 1)

    def draw_numpy(self, rng, means, covariances, counts):
        triples = zip(means, covariances, counts)
        return [rng.multivariate_normal(m, c, int(s)) for m, c, s in triples]

    def draw(self, z, labels, prec_chol):
        lower = prec_chol[labels].transpose(-1, -2)  # U^T: (U^T)^{-1} z has covariance Σ
        return torch.linalg.solve_triangular(lower, z[:, :, None], upper=False)[:, :, 0]

    def _scatter(self, s2, s1, nk, means, xx):
        s2 = unvech(s2, means.shape[1])
        m = s2 - s1[:, :, None] * means[:, None, :] - means[:, :, None] * s1[:, None, :]
        return m + nk[:, None, None] * means[:, :, None] * means[:, None, :]

    def _outer(self, delta):
        return delta[:, :, None] * delta[:, None, :]

    def _normalise(self, m, nk, extra_dof, reg_covar, d):
        cov = m / (nk + extra_dof)[:, None, None]
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        return cov + reg_covar * eye_like(cov, cov.shape[-1])

    def trace(self, prec, psi):
        return (prec * psi).sum((-1, -2))

    def mahalanobis(self, delta, prec):
        return torch.einsum("ki,kij,kj->k", delta, prec, delta)

    def weighted_scatter(self, x, resp, nk, xk, reg_covar):
        sk = torch.stack(  # one (d, d) scatter per component, O(N d) memory
            [(resp[:, k, None] * (x - xk[k])).mT @ (x - xk[k]) for k in range(len(nk))]
        )
        return sk / nk[:, None, None] + reg_covar * eye_like(x, x.shape[1])

    def wishart(self, prior, nk, sk, diff, shrink, b0, nu0, beta):
        dof = nu0 + nk
        outer = diff[:, :, None] * diff[:, None, :]
        inv_w = prior + nk[:, None, None] * (sk + shrink[:, None, None] * outer)
        return dof, inv_w / dof[:, None, None]


class _Tied(MatrixCovariance):
    name = "tied"
    shared = True

    def shape(self, k, d):
        return (d, d)

    def n_parameters(self, k, d):
        return d * (d + 1) // 2

    def features(self, x):
        return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)

    def quadratic_width(self, d):
        return 0

    def _quadratic_eta(self, prec):
        return []

    def shared_quadratic(self, x, prec_chol):
        return -0.5 * (x @ prec_chol).square().sum(1)

    def draw_numpy(self, rng, means, covariances, counts):
        return [rng.multivariate_normal(m, covariances, int(s)) for m, s in zip(means, counts)]

    def draw(self, z, labels, prec_chol):
        return torch.linalg.solve_triangular(prec_chol.T, z.T, upper=False).T

    def _scatter(self, s2, s1, nk, means, xx):
        return xx - s1.T @ means - means.T @ s1 + (means * nk[:, None]).T @ means

    def _outer(self, delta):
        return delta.T @ delta

    def _normalise(self, m, nk, extra_dof, reg_covar, d):
        cov = m / (nk.sum() + extra_dof)
        cov = 0.5 * (cov + cov.T)
        return cov + reg_covar * eye_like(cov, cov.shape[-1])

    def trace(self, prec, psi):
        return (prec * psi).sum()[None]

    def mahalanobis(self, delta, prec):
        return torch.einsum("ki,ij,kj->k", delta, prec, delta)

    def weighted_scatter(self, x, resp, nk, xk, reg_covar):
        sk = (x.mT @ x - (nk[:, None] * xk).mT @ xk) / nk.sum()
        return sk + reg_covar * eye_like(x, x.shape[1])

    def wishart(self, prior, nk, sk, diff, shrink, b0, nu0, beta):
        k = nk.shape[0]
        dof = nu0 + nk.sum() / k
        inv_w = prior + sk * nk.sum() / k + b0 / k * ((nk / beta) * diff.mT) @ diff
        return dof, inv_w / dof


class _Diag(Covariance):
    name = "diag"

    def shape(self, k, d):
        return (k, d)

    def n_parameters(self, k, d):
        return k * d

    def log_det(self, prec_chol, d):
        return torch.log(prec_chol).sum(-1)

    def features(self, x):
        return torch.cat([x * x, x, torch.ones_like(x[:, :1])], dim=1)

    def quadratic_width(self, d):
        return d

    def _quadratic_eta(self, prec):
        return [-0.5 * prec]

    def _scatter(self, s2, s1, nk, means, xx):
        return s2 - 2 * s1 * means + nk[:, None] * means * means

    def trace(self, prec, psi):
        return (prec * torch.diagonal(psi)).sum(-1)

    def mahalanobis(self, delta, prec):
        return (delta * delta * prec).sum(-1)

    def weighted_scatter(self, x, resp, nk, xk, reg_covar):
        avg_x2 = resp.mT @ (x * x) / nk[:, None]
        return avg_x2 - xk * xk + reg_covar

    def wishart(self, prior, nk, sk, diff, shrink, b0, nu0, beta):
        dof = nu0 + nk
        inv_w = prior + nk[:, None] * (sk + shrink[:, None] * diff * diff)
        return dof, inv_w / dof[:, None]

    def default_prior(self, x):
        return x.var(0, correction=1)

    def prior_shape(self, d):
        return (d,)


class _Spherical(Covariance):
    name = "spherical"

    def shape(self, k, d):
        return (k,)

    def n_parameters(self, k, d):
        return k

    def log_det(self, prec_chol, d):
        return d * torch.log(prec_chol)

    def features(self, x):
        return torch.cat([(x * x).sum(1, keepdim=True), x, torch.ones_like(x[:, :1])], dim=1)

    def quadratic_width(self, d):
        return 1

    def _quadratic_eta(self, prec):
        return [-0.5 * prec[:, None]]

    def _p_mu(self, means, prec):
        return means * prec[:, None]

    def _scatter(self, s2, s1, nk, means, xx):
        return s2[:, 0] - 2 * (s1 * means).sum(1) + nk * (means * means).sum(1)

    def _outer(self, delta):
        return (delta * delta).sum(1)

    def _psi(self, psi):
        return torch.diagonal(psi).sum()

    def _normalise(self, m, nk, extra_dof, reg_covar, d):
        return m / (d * (nk + extra_dof)) + reg_covar


COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_REGISTRY: dict[str, Covariance] = {
    "full": _Full(),
    "tied": _Tied(),
    "diag": _Diag(),
    "spherical": _Spherical(),
}


def covariance_type(name: str) -> Covariance:
    """The strategy object of ``name`` (one of :data:`COVARIANCE_TYPES`)."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"covariance_type must be one of {list(COVARIANCE_TYPES)}, got {name!r}"
        ) from None
