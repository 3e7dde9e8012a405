"""A single Gaussian fitted by maximum likelihood or by score matching (survey §1.1.1).

Two estimators with one fitted state (``mean_``, ``covariance_``, ``precision_cholesky_``)
and one set of methods (``log_prob``, ``score_samples``, ``score``, ``sample``):

* :class:`GaussianMLE` — the closed-form maximum-likelihood estimate: sample mean and
  (biased, ``1/N``) sample covariance.
* :class:`GaussianScoreMatching` — Hyvärinen score matching (survey Eq. (5)–(7)). For the
  Gaussian family the model score ``s(x) = -Lambda (x - mu)`` is linear in ``x``, so the
  objective of Eq. (7) is quadratic in the natural parameters ``(Lambda, h = Lambda mu)``
  and its stationarity equations are solved in closed form; gradient descent on the
  empirical Eq. (7) (divergence by automatic differentiation) is offered for checking.
  The survey states that both estimates coincide for a Gaussian — the tests check it.

Covariance types follow scikit-learn: ``"full"`` (``covariance_`` is ``(d, d)``), ``"diag"``
(``(d,)``) and ``"spherical"`` (a 0-d tensor, one variance shared by all coordinates).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from probpath.core.model import Capabilities, Estimator
from probpath.core.validation import check_choice, check_positive_int
from probpath.likelihood._arrays import ArrayFormat, as_input, as_output
from probpath.likelihood.em import resolve_dtype

__all__ = ["GaussianMLE", "GaussianScoreMatching", "randn"]

COVARIANCE_TYPES = ("full", "diag", "spherical")


def randn(
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str,
) -> torch.Tensor:
    """Standard normal draws on ``device``, reproducible with ``generator``.

    The draws are made on the generator's own device (a CPU generator may drive a CUDA
    model) and then moved, so a seed gives the same numbers whatever ``device`` is.
    """
    if generator is None:
        return torch.randn(shape, dtype=dtype, device=device)
    z = torch.randn(shape, generator=generator, dtype=dtype, device=generator.device)
    return z.to(device)


def _cholesky(cov: torch.Tensor, what: str) -> torch.Tensor:
    """Lower Cholesky factor of a (d, d) covariance, with an actionable error."""
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info) != 0:
        raise ValueError(
            f"the {what} is not positive definite (fewer samples than dimensions, or collinear "
            "/ constant features); increase reg_covar (e.g. 1e-6), use covariance_type='diag', "
            "or remove constant features"
        )
    return chol


class _GaussianEstimator(Estimator):
    """Shared state and methods of a fitted Gaussian ``N(mean_, covariance_)``.

    Subclasses implement :meth:`_fit_parameters` returning the mean and the covariance in
    the layout of ``covariance_type``.
    """

    capabilities: ClassVar[Capabilities]

    def _check_settings(self) -> None:
        """Validate the constructor arguments (in ``fit``, as scikit-learn does)."""
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        reg = self.reg_covar
        if isinstance(reg, bool) or not isinstance(reg, int | float) or not reg >= 0:
            raise ValueError(f"reg_covar must be a non-negative number, got {reg!r}")

    # -- fitting -------------------------------------------------------------------------

    def fit(self, X, y=None) -> _GaussianEstimator:
        """Fit to ``X`` of shape ``(N, d)`` (NumPy array or tensor); returns ``self``.

        ``y`` is ignored (scikit-learn pipeline compatibility). Fitted arrays are NumPy for
        NumPy input and tensors (on the input's device) for a tensor.
        """
        self._check_settings()
        dtype = None if self.dtype is None else resolve_dtype(self.dtype)[1]
        device = None if self.device is None else torch.device(self.device)
        x, fmt = as_input(self, X, reset=True, dtype=dtype, device=device, ensure_min_samples=2)
        self._numpy_io, self._device = fmt.numpy, x.device
        with self._torch_state(keep=True):
            mean, cov = self._fit_parameters(x)
            self._set_parameters(mean, cov)
            self.n_samples_fit_ = int(x.shape[0])
        return self

    def _fit_parameters(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the mean and the covariance (``reg_covar`` included) in the layout."""
        raise NotImplementedError(f"{type(self).__name__} must implement _fit_parameters()")

    def _scatter(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample mean and the (1/N) sample covariance plus ``reg_covar`` (in the layout)."""
        mean = x.mean(0)
        diff = x - mean
        n, d = x.shape
        if self.covariance_type == "full":
            cov = diff.mT @ diff / n
            eye = torch.eye(d, dtype=x.dtype, device=x.device)
            return mean, 0.5 * (cov + cov.mT) + self.reg_covar * eye
        var = (diff * diff).mean(0)
        var = var if self.covariance_type == "diag" else var.mean()
        return mean, var + self.reg_covar

    def _set_parameters(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        d = mean.shape[0]
        if self.covariance_type == "full":
            chol = _cholesky(cov, "sample covariance")
            eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
            # precision = P P^T with P = L^{-T} upper-triangular (scikit-learn's layout)
            prec_chol = torch.linalg.solve_triangular(chol, eye, upper=False).mT
        else:
            if not bool((cov > 0).all()):
                raise ValueError(
                    "a variance is zero (a constant feature); increase reg_covar (e.g. 1e-6) "
                    "or remove constant features"
                )
            prec_chol = cov.rsqrt()
        self.mean_ = mean
        self.covariance_ = cov
        self.precision_cholesky_ = prec_chol
        self._refresh()

    def _refresh(self) -> None:
        """``precision_``: the precision ``Lambda = covariance_^{-1}`` (layout of covariance_)."""
        if "precision_cholesky_" in vars(self):
            p = self.precision_cholesky_
            self.precision_ = p @ p.mT if self.covariance_type == "full" else p * p

    def load_fitted(self, tensors, state) -> None:
        super().load_fitted(tensors, state)
        self._device = self.mean_.device
        self._refresh()

    # -- the fitted density --------------------------------------------------------------

    def _input(self, x) -> tuple[torch.Tensor, ArrayFormat]:
        self.check_is_fitted()
        dtype = self.mean_.dtype if isinstance(self.mean_, torch.Tensor) else None
        if dtype is None:
            dtype = torch.float32 if self.mean_.dtype == np.float32 else torch.float64
        return as_input(self, x, reset=False, dtype=dtype, device=self._device)

    def _tensor_method(self, x, fn) -> torch.Tensor:
        t, _ = self._input(x)
        with self._torch_state():
            return fn(t)

    def _whiten(self, x: torch.Tensor) -> torch.Tensor:
        """``y`` with ``||y||^2`` the Mahalanobis distance: ``(x - mu) P`` (P P^T = Lambda)."""
        diff = x - self.mean_
        if self.covariance_type == "full":
            return diff @ self.precision_cholesky_
        return diff * self.precision_cholesky_

    def _log_det_precision_cholesky(self) -> torch.Tensor:
        d = self.n_features_in_
        if self.covariance_type == "full":
            return self.precision_cholesky_.diagonal().log().sum()
        if self.covariance_type == "diag":
            return self.precision_cholesky_.log().sum()
        return d * self.precision_cholesky_.log()

    def log_prob(self, x, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-density ``log N(x | mean_, covariance_)``, a tensor ``(batch,)``.

        Args:
            x: ``(batch, d)``.
            cond: unused (unconditional model); must be ``None``.
        """
        return self._tensor_method(x, self._log_density)

    def _log_density(self, x: torch.Tensor) -> torch.Tensor:
        y = self._whiten(x)
        d = self.n_features_in_
        return (
            -0.5 * (y * y).sum(-1)
            - 0.5 * d * math.log(2 * math.pi)
            + self._log_det_precision_cholesky()
        )

    def score_samples(self, X):
        """Per-sample log-likelihood ``(N,)`` (scikit-learn's; NumPy in, NumPy out)."""
        t, fmt = self._input(X)
        with self._torch_state():
            return as_output(self._log_density(t), fmt)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample (scikit-learn's ``score``; a float)."""
        return float(self.score_samples(X).mean())

    def loss(self, x, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample negative log-likelihood, shape ``(batch,)``."""
        return -self.log_prob(x)

    def score_function(self, x) -> torch.Tensor:
        """The score ``grad_x log p(x) = -Lambda (x - mu)`` (survey Eq. (4)), ``(batch, d)``.

        (``score`` is scikit-learn's mean log-likelihood; this is the survey's score.)
        """

        def grad(t: torch.Tensor) -> torch.Tensor:
            y = self._whiten(t)
            if self.covariance_type == "full":
                return -y @ self.precision_cholesky_.mT
            return -y * self.precision_cholesky_

        return self._tensor_method(x, grad)

    def generate(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """probpath's generative ``sample``: ``mu + L z`` with ``L L^T = covariance_``, a
        tensor ``(n, d)`` (see :func:`probpath.core.model.draw`)."""
        n = check_positive_int(n, "n")
        self.check_is_fitted()
        with self._torch_state():
            return self._draw(n, generator)

    def sample(self, n_samples: int = 1):
        """scikit-learn style: ``(X, y)`` with ``n_samples`` draws and ``y`` all zeros (one
        component), in the format of the fitted data; for a seeded tensor use :meth:`generate`.
        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}; pass an int >= 1")
        if n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples}; pass an int >= 1")
        x = self.generate(int(n_samples))
        y = torch.zeros(int(n_samples), dtype=torch.int64, device=x.device)
        if getattr(self, "_numpy_io", False):
            return x.cpu().numpy(), y.cpu().numpy()
        return x, y

    def _draw(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        d = self.n_features_in_
        z = randn((n, d), generator=generator, dtype=self.mean_.dtype, device=self.mean_.device)
        if self.covariance_type == "full":
            # Lambda = P P^T, so Sigma = P^{-T} P^{-1}: x = mu + P^{-T} z
            step = torch.linalg.solve_triangular(self.precision_cholesky_.mT, z.mT, upper=False)
            return self.mean_ + step.mT
        return self.mean_ + z / self.precision_cholesky_


class GaussianMLE(_GaussianEstimator):
    """Maximum-likelihood Gaussian: sample mean and sample covariance (survey §1.1.1).

    The MLE of ``N(mu, Sigma)`` is ``mu = mean(x)`` and ``Sigma = (1/N) sum (x - mu)(x -
    mu)^T`` (biased, as scikit-learn's ``GaussianMixture(n_components=1)``); ``"diag"`` keeps
    its diagonal, ``"spherical"`` the mean of the diagonal.

    Args:
        covariance_type: ``"full"``, ``"diag"`` or ``"spherical"``.
        reg_covar: added to the covariance diagonal (0 gives the exact MLE; 1e-6 as in
            scikit-learn guards against constant features).
        dtype: ``"float64"`` (default) or ``"float32"`` for the fitted tensors.
        device: where the fitted tensors live (``"cpu"``, ``"cuda"``).

    Attributes:
        mean_: ``(d,)``.
        covariance_: ``(d, d)`` / ``(d,)`` / ``()`` by ``covariance_type``.
        precision_cholesky_: ``P`` with ``P P^T = covariance_^{-1}`` (upper-triangular for
            "full"; the inverse standard deviations otherwise).
        n_features_in_, n_samples_fit_: ints.

    Example:
        >>> x = torch.randn(500, 2, dtype=torch.float64)
        >>> g = GaussianMLE().fit(x)
        >>> g.log_prob(x[:3]).shape
        torch.Size([3])
    """

    capabilities = Capabilities(
        route="likelihood",
        section="§1.1.1",
        exact_log_prob=True,
        has_score=True,
        estimator=True,
    )

    def __init__(
        self,
        covariance_type: str = "full",
        reg_covar: float = 0.0,
        dtype: str | None = None,
        device: str | None = None,
    ) -> None:
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.dtype = dtype
        self.device = device

    def _fit_parameters(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._scatter(x)


class GaussianScoreMatching(_GaussianEstimator):
    """Gaussian fitted by Hyvärinen score matching (survey Eq. (5)–(7)).

    With the model score ``s(x) = -Lambda x + h`` (natural parameters ``Lambda`` and
    ``h = Lambda mu``), the empirical objective of Eq. (7) (dropping the survey's overall
    factor 1/2, which does not move the minimiser) is

        J(Lambda, h) = -tr(Lambda) + (1/2N) sum_n ||Lambda x_n - h||^2,

    quadratic in ``(Lambda, h)``. Setting its gradient to zero gives ``h = Lambda xbar`` and
    the Lyapunov equation ``Lambda S + S Lambda = 2 I`` with ``S`` the (1/N) sample
    covariance. ``method="closed_form"`` solves that equation through the eigendecomposition
    ``S = U D U^T`` (``(U^T Lambda U)_ij (D_i + D_j) = 2 delta_ij``); its unique solution is
    ``S^{-1}``, so score matching returns the MLE, as the survey states (§1.1.1). Diagonal and
    spherical ``Lambda`` give ``lambda_i = 1 / S_ii`` and ``lambda = d / tr S``.

    ``method="gradient"`` instead minimises the empirical Eq. (7) with L-BFGS, computing
    ``sum_i d s_i / d x_i`` by automatic differentiation of the score — an independent check
    of the closed form that never uses the Gaussian algebra above.

    Args:
        covariance_type: ``"full"``, ``"diag"`` or ``"spherical"`` (form of ``Lambda``).
        method: ``"closed_form"`` or ``"gradient"``.
        reg_covar: added to the diagonal of ``S`` (so ``covariance_ = S + reg_covar I``, as
            for :class:`GaussianMLE`).
        max_iter: L-BFGS iterations for ``method="gradient"``.
        dtype, device: as :class:`GaussianMLE`.

    Attributes:
        as :class:`GaussianMLE`; with ``method="gradient"`` also ``objective_`` (the final
        value of Eq. (7)).

    References:
        Hyvärinen, "Estimation of non-normalized statistical models by score matching",
        JMLR 2005 (survey ref. [2]).
    """

    capabilities = Capabilities(
        route="score",
        section="§1.1.1",
        exact_log_prob=True,
        has_score=True,
        estimator=True,
    )

    def __init__(
        self,
        covariance_type: str = "full",
        method: str = "closed_form",
        reg_covar: float = 0.0,
        max_iter: int = 200,
        dtype: str | None = None,
        device: str | None = None,
    ) -> None:
        self.covariance_type = covariance_type
        self.method = method
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.dtype = dtype
        self.device = device

    def _check_settings(self) -> None:
        super()._check_settings()
        check_choice(self.method, "method", ("closed_form", "gradient"))
        check_positive_int(self.max_iter, "max_iter")

    @staticmethod
    def objective(x: torch.Tensor, score_fn) -> torch.Tensor:
        """Empirical score-matching objective (survey Eq. (7), without its factor 1/2).

        ``J = mean_n sum_i [ d s_i(x_n) / d x_ni + s_i(x_n)^2 / 2 ]``, the divergence taken by
        automatic differentiation (``d`` backward passes; fine for the small ``d`` of
        checks).

        Args:
            x: ``(N, d)`` data.
            score_fn: maps ``(N, d)`` to the model score ``(N, d)``, differentiably.

        Returns:
            A scalar tensor (differentiable with respect to ``score_fn``'s parameters).
        """
        x = x.detach().requires_grad_(True)
        s = score_fn(x)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(x.shape[1]):
            (g,) = torch.autograd.grad(s[:, i].sum(), x, create_graph=True)
            div = div + g[:, i]
        return (div + 0.5 * (s * s).sum(-1)).mean()

    def _fit_parameters(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.method == "gradient":
            return self._fit_gradient(x)
        # S (+ reg_covar I): the objective's data term; regularising S regularises Lambda
        xbar, s = self._scatter(x)
        d = x.shape[1]
        if self.covariance_type == "full":
            evals, evecs = torch.linalg.eigh(s)
            tiny = d * torch.finfo(s.dtype).eps * evals.abs().max()  # rank-deficient S
            if bool((evals <= tiny).any()):
                raise ValueError(
                    "the sample covariance is singular, so the score-matching objective has "
                    "no unique minimiser; use more samples than dimensions, increase "
                    "reg_covar (e.g. 1e-6), or remove constant features"
                )
            # Lyapunov equation Lambda S + S Lambda = 2 I in the eigenbasis of S
            rhs = 2 * torch.eye(d, dtype=x.dtype, device=x.device)
            lam_tilde = rhs / (evals[:, None] + evals[None, :])
            lam = evecs @ lam_tilde @ evecs.mT
            h = lam @ xbar
            mean = torch.linalg.solve(lam, h)
            cov = torch.linalg.inv(lam)
            return mean, 0.5 * (cov + cov.mT)
        if bool((s <= 0).any()):
            raise ValueError("a feature is constant; remove it or increase reg_covar")
        # J = sum_i [-lambda_i + lambda_i^2 S_ii / 2]  ->  lambda_i = 1 / S_ii; the spherical
        # J = -d lambda + lambda^2 tr(S) / 2  ->  lambda = d / tr(S) (s is tr(S) / d here)
        lam = 1.0 / s
        return xbar, 1.0 / lam

    def _fit_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, d = x.shape
        xbar = x.mean(0)
        var = (x - xbar).pow(2).mean(0)
        if self.covariance_type == "spherical":  # one scale keeps Lambda spherical
            var = var.mean().expand(d)
        scale = var.sqrt().clamp_min(1e-12)
        # parameters: the natural parameters h and a symmetric Lambda (or its diagonal /
        # scalar version), started at the standardised identity; Eq. (7) is a convex
        # quadratic in them (Hessian built from S), so no positivity constraint is needed
        h = torch.zeros(d, dtype=x.dtype, device=x.device).requires_grad_(True)
        if self.covariance_type == "full":
            raw = torch.eye(d, dtype=x.dtype, device=x.device).requires_grad_(True)
        elif self.covariance_type == "diag":
            raw = torch.ones(d, dtype=x.dtype, device=x.device).requires_grad_(True)
        else:
            raw = torch.ones((), dtype=x.dtype, device=x.device).requires_grad_(True)
        xs = (x - xbar) / scale  # fit on standardised data, map back (affine equivariance)

        def precision() -> torch.Tensor:
            if self.covariance_type == "full":
                return 0.5 * (raw + raw.mT)
            if self.covariance_type == "diag":
                return torch.diag(raw)
            return raw * torch.eye(d, dtype=x.dtype, device=x.device)

        def score_fn(z: torch.Tensor) -> torch.Tensor:  # s = -Lambda z + h, natural params
            return -z @ precision() + h

        opt = torch.optim.LBFGS(
            [h, raw],
            lr=1.0,
            max_iter=self.max_iter,
            tolerance_grad=1e-12,
            tolerance_change=1e-15,
            history_size=50,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            j = self.objective(xs, score_fn)
            j.backward()
            return j

        opt.step(closure)
        with torch.no_grad():
            lam_std = precision()
            mean = xbar + torch.linalg.solve(lam_std, h.detach()) * scale
            cov_std = torch.linalg.inv(lam_std)
            cov_full = cov_std * scale[:, None] * scale[None, :]
            lam_full = torch.linalg.inv(cov_full)
        # Eq. (7) at the solution, in the data's own units
        self.objective_ = float(self.objective(x, lambda z: -(z - mean) @ lam_full).detach())
        reg = self.reg_covar
        if self.covariance_type == "full":
            eye = torch.eye(d, dtype=x.dtype, device=x.device)
            return mean, 0.5 * (cov_full + cov_full.mT) + reg * eye
        if self.covariance_type == "diag":
            return mean, cov_full.diagonal().clone() + reg
        return mean, cov_full.diagonal().mean() + reg
