"""Variational inference (survey §1.1.5): black-box VI, and the Bayesian Gaussian mixture.

* :class:`~probpath.likelihood.bayesian_mixture.BayesianGaussianMixture` — mean-field
  coordinate-ascent VI for a Gaussian mixture (in its own module, re-exported here).
* :class:`MeanFieldVI` — black-box VI for any differentiable ``log_joint(z)``: a
  reparameterised diagonal-Gaussian guide ``q(z) = prod_i N(z_i | m_i, s_i^2)`` (the
  mean-field family of §1.1.5 with Gaussian factors), a Monte Carlo estimate of
  ``E_q[ln p(x, z)]`` plus the analytic entropy ``H[q]``, maximised with Adam.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from probpath.core.validation import check_positive_int, check_tensor
from probpath.likelihood.bayesian_mixture import BayesianGaussianMixture
from probpath.likelihood.em import resolve_dtype
from probpath.likelihood.gaussian import randn

__all__ = ["BayesianGaussianMixture", "MeanFieldVI"]


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
