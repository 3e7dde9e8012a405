"""Exact marginals of a Gaussian mixture pushed along any affine path — the test oracle.

If ``x0 ~ sum_k w_k N(mu_k, S_k)`` then ``x_t = alpha x0 + sigma eps`` is the mixture
``sum_k w_k N(alpha mu_k, C_k)``, ``C_k = alpha^2 S_k + sigma^2 I``, so the density ``p_t``, the
score and the posterior mean ``E[x0 | x_t]`` (hence every :class:`Prediction`) are closed form:

    E[x0 | x_t, k] = mu_k + alpha S_k C_k^{-1} (x_t - alpha mu_k),
    score = -sum_k r_k(x_t) C_k^{-1} (x_t - alpha mu_k),   r_k = posterior of component k.

With ``S_k = U_k diag(s_k) U_k^T`` (one eigendecomposition at construction) every ``C_k`` is
``U_k diag(alpha^2 s_k + sigma^2) U_k^T``: no factorisation per time step.

The oracle is a :class:`~probpath.paths.field.Field` (native kind ``X0``), usable wherever a
trained field is (samplers, likelihood, benchmarks).
"""

from __future__ import annotations

import math

import torch

from probpath.core.broadcast import expand_t
from probpath.core.validation import as_tensor
from probpath.paths.affine import AffinePath
from probpath.paths.field import Field
from probpath.paths.parameterization import Prediction

__all__ = ["GaussianMixtureOracle", "ClassConditionalOracle", "MixturePosterior"]


def _masked(logp: torch.Tensor, mask) -> torch.Tensor:
    return logp if mask is None else logp.masked_fill(~mask, float("-inf"))


class GaussianMixtureOracle(Field):
    """A Gaussian mixture in ``R^d`` and its exact marginals along ``path``.

    Args:
        weights: ``(K,)`` nonnegative, normalised internally.
        means: ``(K, d)``.
        covs: ``(K, d, d)`` symmetric positive definite (or ``(K, d)`` diagonals).
        path: an :class:`AffinePath` (default: ``AffinePath("vp")``).

    Data of any event shape with ``prod(event) = d`` is accepted (flattened internally).

    >>> o = GaussianMixtureOracle([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]])
    >>> float(o.log_prob(torch.zeros(1, 2, dtype=torch.float64), 0.0)[0]) == -math.log(2 * math.pi)
    True
    """

    def __init__(self, weights, means, covs, path: AffinePath | None = None):
        super().__init__(path if path is not None else AffinePath("vp"), Prediction.X0)
        w = as_tensor(weights, "weights", dtype=torch.float64)
        mu = as_tensor(means, "means", dtype=torch.float64)
        cov = as_tensor(covs, "covs", dtype=torch.float64)
        if mu.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(mu.shape)}")
        k, d = mu.shape
        if cov.shape == (k, d):
            cov = torch.diag_embed(cov)
        if w.shape != (k,) or cov.shape != (k, d, d):
            raise ValueError(
                f"weights must be (K,) = ({k},) and covs (K, d, d) = ({k}, {d}, {d}); got "
                f"{tuple(w.shape)} and {tuple(cov.shape)}"
            )
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights must be nonnegative with a positive sum")
        s, u = torch.linalg.eigh(0.5 * (cov + cov.transpose(-1, -2)))
        if (s <= 0).any():
            raise ValueError("covs must be positive definite; add a small multiple of I")
        self.weights, self.means, self.covs = w / w.sum(), mu, cov
        self._eig, self._basis = s, u  # (K, d), (K, d, d)
        self.dim = d

    # -- internals -------------------------------------------------------------------------
    def _params(self, like):
        return tuple(
            p.to(dtype=like.dtype, device=like.device)
            for p in (self.weights, self.means, self._eig, self._basis)
        )

    def _stats(self, x, alpha, sigma):
        """Per-component log-density, whitened projections and variances at ``(alpha, sigma)``.

        Returns ``logp (B, K)``, ``z (B, K, d)`` = ``U_k^T (x - alpha mu_k)``, ``var (B, K, d)``
        = eigenvalues of ``C_k``, plus the params.
        """
        w, mu, s, u = self._params(x)
        a, sg = alpha[:, None, None], sigma[:, None, None]
        diff = x[:, None, :] - a * mu[None]  # (B, K, d)
        z = torch.einsum("bkd,kde->bke", diff, u)
        var = a * a * s[None] + sg * sg  # (B, K, d)
        maha = (z * z / var).sum(-1)
        logp = -0.5 * (maha + torch.log(var).sum(-1) + self.dim * math.log(2 * math.pi))
        return logp + torch.log(w)[None], z, var, s, u

    def _flat(self, x, t):
        x = torch.as_tensor(x)
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ValueError(f"x must have {self.dim} features per sample, got {tuple(x.shape)}")
        v = self.path(expand_t(t, flat))
        return flat, v

    # -- public ---------------------------------------------------------------------------
    def log_prob_at(
        self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, mask=None
    ) -> torch.Tensor:
        """``log p(x)`` of ``alpha x0 + sigma eps``; ``x`` ``(B, d)``, ``alpha, sigma`` ``(B,)``.

        ``mask`` ``(B, K)`` bool keeps only those components (unnormalised: the log of the
        kept mixture mass times its density).
        """
        logp, *_ = self._stats(x, alpha, sigma)
        return torch.logsumexp(_masked(logp, mask), dim=1)

    def x0_eps_at(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, mask=None):
        """``(E[x0 | x], E[eps | x])`` for ``x`` ``(B, d)`` given ``alpha, sigma`` ``(B,)``.

        ``E[eps | x] = -sigma * score``; both are finite wherever ``alpha`` or ``sigma`` is 0.
        ``mask`` ``(B, K)`` bool: the mixture of the kept components only (renormalised).
        """
        logp, z, var, s, u = self._stats(x, alpha, sigma)
        r = torch.softmax(_masked(logp, mask), dim=1)[..., None]  # (B, K, 1)
        a = alpha[:, None, None]
        _, mu, _, _ = self._params(x)
        x0_k = mu[None] + torch.einsum("kde,bke->bkd", u, a * s[None] / var * z)
        score_k = -torch.einsum("kde,bke->bkd", u, z / var)
        return (r * x0_k).sum(1), -sigma[:, None] * (r * score_k).sum(1)

    def log_prob(self, x: torch.Tensor, t=0.0) -> torch.Tensor:
        """Exact ``log p_t(x)`` ``(batch,)`` at time ``t`` (a float or ``(batch,)``)."""
        flat, v = self._flat(x, t)
        return self.log_prob_at(flat, v.alpha, v.sigma)

    def score(self, x: torch.Tensor, t) -> torch.Tensor:
        """Exact ``grad_x log p_t(x)``, shaped like ``x``."""
        flat, v = self._flat(x, t)
        logp, z, var, s, u = self._stats(flat, v.alpha, v.sigma)
        r = torch.softmax(logp, dim=1)[..., None]
        return (r * -torch.einsum("kde,bke->bkd", u, z / var)).sum(1).reshape(x.shape)

    def x0_eps(self, x, t, cond=None, *, values=None):
        if cond is not None:
            raise ValueError("the Gaussian-mixture oracle is unconditional; pass cond=None")
        flat = x.reshape(x.shape[0], -1)
        if values is None:
            values = self.path(expand_t(t, flat))
        alpha, sigma = (expand_t(c, flat) for c in (values.alpha, values.sigma))
        x0_hat, eps_hat = self.x0_eps_at(flat, alpha, sigma)
        return x0_hat.reshape(x.shape), eps_hat.reshape(x.shape)

    def evaluate(self, x, t, cond=None):
        return self.x0_eps(x, t, cond)[0]

    def sample(
        self,
        n: int,
        t: float = 0.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """Draw ``n`` samples of ``x_t`` (``t = 0``: the mixture itself) -> ``(n, d)``."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x0 = self.means[k] + torch.einsum("nde,ne->nd", self._basis[k], self._eig[k].sqrt() * z)
        v = self.path(torch.full((n,), float(t), dtype=torch.float64))
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (v.alpha[:, None] * x0 + v.sigma[:, None] * eps).to(dtype)

    def marginal_moments(self, t: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact mean ``(d,)`` and covariance ``(d, d)`` of ``x_t`` (float64)."""
        v = self.path(torch.tensor(float(t), dtype=torch.float64))
        w, mu = self.weights, self.means
        mean = w @ mu
        second = torch.einsum("k,kde->de", w, self.covs + mu[:, :, None] * mu[:, None, :])
        cov0 = second - mean[:, None] * mean[None, :]
        eye = torch.eye(self.dim, dtype=torch.float64)
        return v.alpha * mean, v.alpha**2 * cov0 + v.sigma**2 * eye

    def posterior(self, A, y, sigma_y: float) -> MixturePosterior:
        """The exact posterior of ``x0`` given ``y = A x0 + sigma_y n``, ``n ~ N(0, I)``.

        For a Gaussian-mixture prior it is again a Gaussian mixture (Bishop 2006, Eq.
        2.113-2.117, per component): with ``G_k = A S_k A^T + sigma_y^2 I`` and
        ``K_k = S_k A^T G_k^{-1}``,

            w'_k ∝ w_k N(y; A mu_k, G_k),  m_k = mu_k + K_k (y - A mu_k),
            P_k = S_k - K_k A S_k.

        Args:
            A: the measurement matrix ``(m, d)`` (float64; an operator's ``matrix()``).
            y: one observation ``(m,)``.
            sigma_y: the observation noise level (0: noiseless; then ``A`` needs full row rank
                and each ``P_k`` is singular along the rows of ``A``).
        """
        a = as_tensor(A, "A", dtype=torch.float64)
        y = as_tensor(y, "y", dtype=torch.float64).reshape(-1)
        if a.ndim != 2 or a.shape[1] != self.dim or y.shape != (a.shape[0],):
            raise ValueError(
                f"A must be (m, {self.dim}) and y (m,); got {tuple(a.shape)} and {tuple(y.shape)}"
            )
        if sigma_y < 0:
            raise ValueError(f"sigma_y must be >= 0, got {sigma_y}")
        m = a.shape[0]
        sa = self.covs @ a.T  # (K, d, m)
        gram = a @ sa + sigma_y**2 * torch.eye(m, dtype=torch.float64)  # (K, m, m)
        chol = torch.linalg.cholesky(gram)
        resid = y[None] - self.means @ a.T  # (K, m)
        sol = torch.cholesky_solve(resid[..., None], chol)[..., 0]  # G^{-1} (y - A mu)
        means = self.means + (sa @ sol[..., None])[..., 0]
        gain_t = torch.cholesky_solve(sa.transpose(1, 2), chol)  # G^{-1} A S  (K, m, d)
        covs = self.covs - sa @ gain_t
        covs = 0.5 * (covs + covs.transpose(1, 2))
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(-1)
        log_ev = -0.5 * ((resid * sol).sum(-1) + logdet + m * math.log(2 * math.pi))
        weights = torch.softmax(torch.log(self.weights) + log_ev, dim=0)
        return MixturePosterior(weights, means, covs)


class MixturePosterior:
    """A Gaussian mixture ``sum_k w_k N(m_k, P_k)`` with possibly singular ``P_k`` (float64):
    the exact posterior of :meth:`GaussianMixtureOracle.posterior`.

    Attributes:
        weights ``(K,)``, means ``(K, d)``, covs ``(K, d, d)``.
    """

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor):
        self.weights, self.means, self.covs = weights, means, covs
        s, u = torch.linalg.eigh(covs)
        # eigenvalues at round-off level (the directions a noiseless y pins down) are zero
        s = torch.where(s > 1e-12 * s.abs().amax(-1, keepdim=True), s, torch.zeros_like(s))
        self._root = u * s.sqrt()[:, None, :]  # (K, d, d): root @ root^T = P

    def mean(self) -> torch.Tensor:
        """The posterior mean ``sum_k w_k m_k`` ``(d,)``."""
        return self.weights @ self.means

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws ``(n, d)`` (float64)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        return self.means[k] + torch.einsum("nde,ne->nd", self._root[k], z)


class ClassConditionalOracle(GaussianMixtureOracle):
    """A Gaussian mixture whose components are grouped into classes: exact ``p_t(x | c)``.

    Class ``c`` is the mixture of its components with weights renormalised within the class,
    ``p(x | c) = sum_{k in c} w_k N(mu_k, S_k) / sum_{k in c} w_k``, and ``p(c) = sum_{k in c}
    w_k``. Labels ``cond`` ``(batch,)`` select the class per sample; the label ``num_classes``
    means "no label" (the whole mixture), the convention of probpath's label embeddings.

    Args:
        weights, means, covs, path: as :class:`GaussianMixtureOracle`.
        classes: ``(K,)`` the class ``0..C-1`` of each component (every class non-empty).
    """

    def __init__(self, weights, means, covs, classes, path: AffinePath | None = None):
        super().__init__(weights, means, covs, path)
        c = torch.as_tensor(classes)
        if c.shape != self.weights.shape or c.is_floating_point() or int(c.min()) < 0:
            raise ValueError(f"classes must be {len(self.weights)} non-negative integer labels")
        self.classes = c.long()
        self.num_classes = int(c.max()) + 1
        if len(torch.unique(self.classes)) != self.num_classes:
            raise ValueError("classes must use every label 0..C-1 (no empty class)")

    def mask(self, cond) -> torch.Tensor | None:
        """``(B, K)`` bool: the components of each sample's class (all for the null label)."""
        if cond is None:
            return None
        cond = torch.as_tensor(cond).long().reshape(-1, 1)
        if int(cond.min()) < 0 or int(cond.max()) > self.num_classes:
            raise ValueError(
                f"cond labels must lie in 0..{self.num_classes} ({self.num_classes}: no label)"
            )
        return (self.classes[None, :].to(cond.device) == cond) | (cond == self.num_classes)

    def log_prob(self, x: torch.Tensor, t=0.0, cond=None) -> torch.Tensor:
        """Exact ``log p_t(x | c)`` ``(batch,)`` (``cond=None``: ``log p_t(x)``)."""
        flat, v = self._flat(x, t)
        out = self.log_prob_at(flat, v.alpha, v.sigma, self.mask(cond))
        if cond is None:
            return out
        prior = self.class_prior().to(out)[torch.as_tensor(cond).long()]
        return out - torch.log(prior)

    def class_prior(self) -> torch.Tensor:
        """``p(c)`` ``(C,)``, with ``p(null) = 1`` appended: ``(C + 1,)``."""
        prior = torch.zeros(self.num_classes, dtype=torch.float64).index_add_(
            0, self.classes, self.weights
        )
        return torch.cat([prior, torch.ones(1, dtype=torch.float64)])

    def class_log_posterior(self, x: torch.Tensor, t) -> torch.Tensor:
        """Exact ``log p(c | x_t)`` ``(batch, C)`` — the ideal noise-aware classifier."""
        flat, v = self._flat(x, t)
        logp, *_ = self._stats(flat, v.alpha, v.sigma)  # (B, K), includes log w_k
        onehot = self.classes[None, :] == torch.arange(self.num_classes)[:, None]  # (C, K)
        per_class = torch.logsumexp(
            logp[:, None, :].masked_fill(~onehot[None].to(logp.device), float("-inf")), dim=-1
        )
        return per_class - torch.logsumexp(logp, dim=1, keepdim=True)

    def score(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        """Exact ``grad_x log p_t(x | c)`` shaped like ``x`` (``cond=None``: unconditional)."""
        flat, v = self._flat(x, t)
        _, eps_hat = self.x0_eps_at(flat, v.alpha, v.sigma, self.mask(cond))
        return (-eps_hat / v.sigma[:, None]).reshape(x.shape)

    def x0_eps(self, x, t, cond=None, *, values=None):
        flat = x.reshape(x.shape[0], -1)
        if values is None:
            values = self.path(expand_t(t, flat))
        alpha, sigma = (expand_t(c, flat) for c in (values.alpha, values.sigma))
        x0_hat, eps_hat = self.x0_eps_at(flat, alpha, sigma, self.mask(cond))
        return x0_hat.reshape(x.shape), eps_hat.reshape(x.shape)
