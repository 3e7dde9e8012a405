"""Covariance algebra of Gaussian mixtures for the four covariance types (Survey §1.1.2).

Shapes (``K`` components, ``d`` features), as in scikit-learn:

* ``"full"``: covariances ``(K, d, d)``; precision Cholesky factors ``(K, d, d)``;
* ``"tied"``: one covariance ``(d, d)`` shared by all components;
* ``"diag"``: ``(K, d)`` variances;
* ``"spherical"``: ``(K,)`` variances.

The precision Cholesky factor ``U`` is upper triangular with ``precision = U U^T``
(scikit-learn's convention), so ``(x - mu)^T P (x - mu) = ||(x - mu)^T U||^2``.

The component log-density is written in exponential-family form,
``ln N(x | mu_k, Sigma_k) = T(x) . eta_k`` with the sufficient statistics ``T(x)``
built by :func:`gaussian_features` and natural parameters ``eta_k`` by
:func:`natural_parameters`; the E-step is then one matrix product ``T(x) @ eta^T`` and the
M-step's statistics one product ``resp^T @ T(x)`` (see :mod:`probpath.likelihood.mixture`).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "COVARIANCE_TYPES",
    "precision_cholesky",
    "precision_cholesky_from_precisions",
    "precisions_from_cholesky",
    "covariances_from_precision_cholesky",
    "log_det_cholesky",
    "n_covariance_parameters",
    "gaussian_features",
    "natural_parameters",
    "tied_quadratic",
    "covariance_from_scatter",
    "stacked_whitening",
    "whitened_log_prob_t",
    "second_moment_sums",
    "vech",
]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

_CHOLESKY_HELP = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
    "the number of components, increase reg_covar, or scale the input data."
)


def _check_cholesky(info: torch.Tensor) -> None:
    if bool((info != 0).any()):
        bad = torch.nonzero(info.reshape(-1)).reshape(-1).tolist()
        raise ValueError(f"{_CHOLESKY_HELP} (non-positive-definite component(s): {bad})")


def precision_cholesky(covariances: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """Upper-triangular ``U`` with ``U U^T = Sigma^{-1}`` (or ``1/sqrt(var)`` for diag/spherical).

    Raises:
        ValueError: a covariance is not positive definite; the message says to decrease
            ``n_components``, increase ``reg_covar`` or scale the data.
    """
    if covariance_type in ("full", "tied"):
        chol, info = torch.linalg.cholesky_ex(covariances)
        _check_cholesky(info)
        eye = torch.eye(covariances.shape[-1], dtype=covariances.dtype, device=covariances.device)
        eye = eye.expand_as(covariances)
        inv = torch.linalg.solve_triangular(chol, eye, upper=False)  # L^{-1}
        return inv.transpose(-1, -2).contiguous()  # U = L^{-T}
    if bool((covariances <= 0).any()) or not bool(torch.isfinite(covariances).all()):
        raise ValueError(f"{_CHOLESKY_HELP} (a variance is non-positive)")
    return covariances.rsqrt()


def precision_cholesky_from_precisions(precisions: torch.Tensor, covariance_type: str):
    """``U`` from precision matrices: ``U = J chol(J P J) J`` with ``J`` the exchange matrix."""
    if covariance_type in ("full", "tied"):
        flipped = precisions.flip(-1, -2)
        chol, info = torch.linalg.cholesky_ex(flipped)
        if bool((info != 0).any()):
            raise ValueError(
                "precisions_init must hold symmetric positive-definite matrices; check it"
            )
        return chol.flip(-1, -2).contiguous()
    if bool((precisions <= 0).any()):
        raise ValueError("precisions_init must be positive; check it")
    return precisions.sqrt()


def precisions_from_cholesky(prec_chol: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """``P = U U^T`` (full, tied) or ``U^2`` (diag, spherical)."""
    if covariance_type in ("full", "tied"):
        return prec_chol @ prec_chol.transpose(-1, -2)
    return prec_chol**2


def covariances_from_precision_cholesky(prec_chol: torch.Tensor, covariance_type: str):
    """``Sigma = (U U^T)^{-1} = U^{-T} U^{-1}`` (or ``1 / U^2``)."""
    if covariance_type in ("full", "tied"):
        eye = torch.eye(prec_chol.shape[-1], dtype=prec_chol.dtype, device=prec_chol.device)
        u_inv = torch.linalg.solve_triangular(prec_chol, eye.expand_as(prec_chol), upper=True)
        return u_inv.transpose(-1, -2) @ u_inv
    return prec_chol.pow(-2)


def log_det_cholesky(prec_chol: torch.Tensor, covariance_type: str, d: int) -> torch.Tensor:
    """``ln det U = -½ ln det Sigma`` per component: shape ``(K,)`` (a scalar for tied)."""
    if covariance_type in ("full", "tied"):
        return torch.log(torch.diagonal(prec_chol, dim1=-2, dim2=-1)).sum(-1)
    if covariance_type == "diag":
        return torch.log(prec_chol).sum(-1)
    return d * torch.log(prec_chol)


def n_covariance_parameters(covariance_type: str, n_components: int, d: int) -> int:
    """Free covariance parameters (used by BIC / AIC)."""
    return {
        "full": n_components * d * (d + 1) // 2,
        "tied": d * (d + 1) // 2,
        "diag": n_components * d,
        "spherical": n_components,
    }[covariance_type]


def _triu(d: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    iu = torch.triu_indices(d, d, device=device)
    return iu[0], iu[1]


def gaussian_features(x: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """Sufficient statistics ``T(x)``, shape ``(n, F)``; the last column is ones.

    full: ``[x_i x_j (i <= j), x, 1]``; diag: ``[x^2, x, 1]``; spherical:
    ``[||x||^2, x, 1]``; tied: ``[x, 1]`` (the shared quadratic term is separate).
    """
    ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    if covariance_type == "full":
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
    if covariance_type == "diag":
        return torch.cat([x * x, x, ones], dim=1)
    if covariance_type == "spherical":
        return torch.cat([(x * x).sum(1, keepdim=True), x, ones], dim=1)
    return torch.cat([x, ones], dim=1)


def natural_parameters(
    means: torch.Tensor, prec_chol: torch.Tensor, covariance_type: str
) -> torch.Tensor:
    """``eta`` with ``ln N(x | mu_k, Sigma_k) = T(x) . eta_k`` (tied: plus :func:`tied_quadratic`).

    Args:
        means: ``(K, d)``, in the frame in which ``T(x)`` is computed.
        prec_chol: precision Cholesky factors (shape per covariance type).

    Returns:
        ``(K, F)`` matching :func:`gaussian_features`.
    """
    k, d = means.shape
    log_det = log_det_cholesky(prec_chol, covariance_type, d)
    if covariance_type in ("full", "tied"):
        prec = precisions_from_cholesky(prec_chol, covariance_type)
        prec = prec.expand(k, d, d)
        p_mu = (prec @ means.unsqueeze(-1)).squeeze(-1)  # (K, d)
    else:
        prec = precisions_from_cholesky(prec_chol, covariance_type)
        p_mu = means * (prec if covariance_type == "diag" else prec[:, None])
    mu_p_mu = (means * p_mu).sum(-1)
    const = -0.5 * (d * math.log(2 * math.pi) + mu_p_mu) + log_det
    if covariance_type == "full":
        i, j = _triu(d, means.device)
        quad = prec[:, i, j] * torch.where(i == j, 1.0, 2.0).to(means.dtype)
        return torch.cat([-0.5 * quad, p_mu, const[:, None]], dim=1)
    if covariance_type == "diag":
        return torch.cat([-0.5 * prec, p_mu, const[:, None]], dim=1)
    if covariance_type == "spherical":
        return torch.cat([-0.5 * prec[:, None], p_mu, const[:, None]], dim=1)
    return torch.cat([p_mu, const.expand(k)[:, None]], dim=1)


def tied_quadratic(x: torch.Tensor, prec_chol: torch.Tensor) -> torch.Tensor:
    """The shared term ``-½ x^T P x`` of a tied-covariance component, shape ``(n,)``."""
    return -0.5 * (x @ prec_chol).square().sum(1)


def vech(m: torch.Tensor) -> torch.Tensor:
    """The upper triangle (``i <= j``, row by row) of ``(..., d, d)`` as ``(..., d(d+1)/2)``."""
    i, j = _triu(m.shape[-1], m.device)
    return m[..., i, j]


def stacked_whitening(
    means: torch.Tensor, prec_chol: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full covariances in whitened form: ``ln N(x | mu_k, Sigma_k) = c_k - ½ ||x U_k - b_k||^2``.

    With ``U_k`` the upper-triangular precision Cholesky factor, ``(x - mu_k)^T P_k (x - mu_k)
    = ||(x - mu_k)^T U_k||^2`` and ``b_k = mu_k^T U_k``; the ``K`` factors side by side make
    the E-step one ``(n, d) @ (d, K d)`` product (what scikit-learn does one component at a
    time). For large ``d`` this is cheaper than the ``d (d + 1) / 2`` quadratic features of
    :func:`gaussian_features`, which are rebuilt for every chunk when they do not fit in
    memory.

    Args:
        means: ``(K, d)``, in the frame in which ``x`` will be given.
        prec_chol: ``(K, d, d)``.

    Returns:
        ``u_stack`` ``(d, K d)`` (column block ``k`` is ``U_k``), ``b`` ``(K d,)`` and
        ``c`` ``(K,)`` with ``c_k = ln det U_k - (d / 2) ln 2 pi``.
    """
    k, d = means.shape
    u_stack = prec_chol.permute(1, 0, 2).reshape(d, k * d).contiguous()
    b = (means[:, None, :] @ prec_chol).reshape(k * d)
    c = log_det_cholesky(prec_chol, "full", d) - 0.5 * d * math.log(2 * math.pi)
    return u_stack, b, c


def whitened_log_prob_t(
    x: torch.Tensor,
    u_stack: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    out: torch.Tensor,
    work: torch.Tensor,
) -> torch.Tensor:
    """``out[k, n] += ln N(x_n | mu_k, Sigma_k)`` from :func:`stacked_whitening`'s terms.

    Args:
        x: ``(n, d)``.
        out: ``(K, n)``, holding what the log-density is added to (e.g. ``ln pi_k``).
        work: a scratch tensor of ``n K d`` elements (overwritten).

    Returns:
        ``out``.
    """
    n, k = x.shape[0], c.shape[0]
    y = torch.addmm(b, x, u_stack, beta=-1, out=work.view(n, -1))  # x U_k - b_k
    sq = y.square_().view(n, k, -1).sum(2)  # (n, K) squared Mahalanobis distances
    return out.add_(c[:, None]).sub_(sq.T, alpha=0.5)


def second_moment_sums(
    x: torch.Tensor, resp: torch.Tensor, work: torch.Tensor | None = None
) -> torch.Tensor:
    """``S2_k = Σ_n γ_nk x_n x_n^T`` for all ``k`` as one ``(d, n) @ (n, K d)`` product.

    Args:
        x: ``(n, d)``.
        resp: ``(n, K)`` (a transposed ``(K, n)`` view is fine).
        work: optional scratch of ``n K d`` elements.

    Returns:
        ``(K, d, d)``.
    """
    n, d = x.shape
    k = resp.shape[1]
    shape = (n, k, d)
    w = torch.empty(shape, dtype=x.dtype, device=x.device) if work is None else work.view(shape)
    torch.mul(resp[:, :, None], x[:, None, :], out=w)
    return (x.T @ w.view(n, k * d)).view(d, k, d).transpose(0, 1)


def _unvech(v: torch.Tensor, d: int) -> torch.Tensor:
    i, j = _triu(d, v.device)
    out = v.new_zeros(*v.shape[:-1], d, d)
    out[..., i, j] = v
    out[..., j, i] = v
    return out


def covariance_from_scatter(
    stats: torch.Tensor,
    nk: torch.Tensor,
    means: torch.Tensor,
    covariance_type: str,
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
    means ``mu_k``, the scatter matrix is
    ``M_k = psi + S2_k - S1_k mu_k^T - mu_k S1_k^T + N_k mu_k mu_k^T
    + kappa (mu_k - m0)(mu_k - m0)^T`` and ``Sigma_k = M_k / (N_k + extra_dof) + reg_covar I``
    (tied: ``Σ_k M_k`` with ``psi`` once, over ``N + extra_dof``; diag: the diagonal of
    ``M_k``; spherical: its mean). Without a prior (``psi = 0, kappa = 0, extra_dof = 0``)
    this is the maximum-likelihood M-step (Survey §1.1.2).

    Args:
        stats: ``resp^T T(x)``, shape ``(K, F)``.
        nk: ``(K,)`` responsibility sums.
        means: ``(K, d)`` updated means.
        xx: tied only: ``Σ_n w_n x_n x_n^T`` ``(d, d)``.
        psi: inverse-Wishart scale ``(d, d)`` or ``None``.
        kappa: prior precision of the means; ``mean_prior`` is ``m0`` ``(d,)``.
        extra_dof: the denominator offset of the MAP mode (0 for the MLE).
    """
    k, d = means.shape
    n = nk[:, None]
    if covariance_type == "full":
        f = d * (d + 1) // 2
        s2 = _unvech(stats[:, :f], d)
        s1 = stats[:, f : f + d]
        m = s2 - s1[:, :, None] * means[:, None, :] - means[:, :, None] * s1[:, None, :]
        m = m + nk[:, None, None] * means[:, :, None] * means[:, None, :]
    elif covariance_type == "tied":
        s1 = stats[:, :d]
        m = xx - s1.T @ means - means.T @ s1 + (means * n).T @ means
    else:
        s2 = stats[:, : d if covariance_type == "diag" else 1]
        s1 = stats[:, s2.shape[1] : s2.shape[1] + d]
        if covariance_type == "diag":
            m = s2 - 2 * s1 * means + n * means * means
        else:
            m = s2[:, 0] - 2 * (s1 * means).sum(1) + nk * (means * means).sum(1)
    if kappa > 0:
        delta = means - mean_prior
        if covariance_type == "full":
            m = m + kappa * delta[:, :, None] * delta[:, None, :]
        elif covariance_type == "tied":
            m = m + kappa * delta.T @ delta
        elif covariance_type == "diag":
            m = m + kappa * delta * delta
        else:
            m = m + kappa * (delta * delta).sum(1)
    if psi is not None:
        if covariance_type in ("full", "tied"):
            m = m + psi
        elif covariance_type == "diag":
            m = m + torch.diagonal(psi)
        else:
            m = m + torch.diagonal(psi).sum()
    if covariance_type == "full":
        cov = m / (nk + extra_dof)[:, None, None]
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        return cov + reg_covar * torch.eye(d, dtype=cov.dtype, device=cov.device)
    if covariance_type == "tied":
        cov = m / (nk.sum() + extra_dof)
        cov = 0.5 * (cov + cov.T)
        return cov + reg_covar * torch.eye(d, dtype=cov.dtype, device=cov.device)
    if covariance_type == "diag":
        return m / (nk + extra_dof)[:, None] + reg_covar
    return m / (d * (nk + extra_dof)) + reg_covar
