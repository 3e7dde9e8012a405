"""EDM's training recipe (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", Table 1, "Ours" column): the survey's Table 1 EDM row.

Four choices on top of the shared affine path (survey §2.5), all in EDM's scaled variables
``x_tilde = x / alpha_t``, ``sigma_tilde = sigma_t / alpha_t`` (for EDM's own path
``alpha = 1``, ``sigma_tilde = sigma``):

* **preconditioning** — the network ``F`` is wrapped into a denoiser
  ``D(x_tilde; sigma) = c_skip x_tilde + c_out F(c_in x_tilde, c_noise)``
  (:class:`~probpath.paths.field.PathField` with ``precondition=True``);
* **noise levels** — ``ln sigma ~ N(P_mean, P_std^2)``, ``P_mean = -1.2``, ``P_std = 1.2``
  (:func:`edm_sigma`);
* **loss weighting** — ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``,
  which makes the effective weight of ``F``'s regression ``lambda c_out^2 = 1``
  (:func:`edm_weight`, :func:`edm_loss`);
* **sampler** — Heun's 2nd-order method on EDM's rho-grid (``rho = 7``), 18 steps = 35 NFE
  (``sampler="edm_heun"``, the shared sampler of :mod:`probpath.sampling`).

The loss is minimised by the posterior mean: ``E[lambda ||D - x0||^2]`` is, for each
``sigma``, a weighted least-squares regression of ``x0`` on ``x_sigma``, whose minimiser is
``D*(x_sigma; sigma) = E[x0 | x_sigma]`` (``tests/score/test_edm.py`` checks it with the
Gaussian-mixture oracle's exact denoiser).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from probpath.core.model import Capabilities
from probpath.core.validation import check_positive_int
from probpath.paths.affine import AffinePath
from probpath.paths.field import Field, PathField
from probpath.paths.parameterization import Prediction
from probpath.sampling.path_model import PathModel, build_path_network

__all__ = ["EDM", "edm_sigma", "edm_weight", "edm_loss"]


def edm_sigma(
    n: int,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``n`` noise levels ``sigma = exp(P_mean + P_std z)``, ``z ~ N(0, 1)`` (EDM Table 1)."""
    n = check_positive_int(n, "n")
    if not p_std > 0:
        raise ValueError(f"p_std must be positive, got {p_std!r}")
    z = torch.randn(n, generator=generator, device=device, dtype=dtype)
    return torch.exp(p_mean + p_std * z)


def edm_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (EDM Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(
    field: Field,
    x0: torch.Tensor,
    sigma: torch.Tensor,
    *,
    sigma_data: float = 0.5,
    eps: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """EDM's loss ``lambda(sigma) ||D(x_sigma; sigma) - x0||^2`` (EDM Eq. 8), mean over dims.

    Args:
        field: any field on any affine path (read as a denoiser, ``Prediction.X0``).
        x0: data ``(batch, *event)``.
        sigma: noise levels ``sigma_tilde`` ``(batch,)``, e.g. from :func:`edm_sigma`; the time
            is the path's ``t`` of log-SNR ``-2 ln sigma``.
        sigma_data: the data's standard deviation in ``lambda``.
        eps: the noise (drawn with ``generator`` when ``None``).
        cond: labels for conditional fields.

    Returns:
        ``(batch,)``.
    """
    t = field.path.t_from_log_snr(-2.0 * torch.log(sigma)).to(x0.dtype)
    ps = field.path.sample(x0, t, eps=eps, generator=generator)
    x0_hat = field.predict(ps.x_t, t, as_=Prediction.X0, cond=cond)
    err = ((x0_hat - x0) ** 2).reshape(len(x0), -1).mean(1)
    return edm_weight(sigma.to(x0.dtype), sigma_data) * err


class EDM(PathModel):
    """EDM (Karras et al. 2022): preconditioned denoiser, lognormal sigma, lambda weighting, Heun.

    Args:
        event_shape: shape of one sample, ``(D,)`` or ``(C, H, W)``.
        num_classes: labels for a class-conditional network (0: unconditional).
        sigma_data: the data's standard deviation (0.5 for data scaled to ``[-1, 1]``).
        p_mean, p_std: the lognormal law of the training sigma.
        sigma_min, sigma_max, rho: EDM's path ``sigma(t) = sigma_max t^rho`` and sampling grid.
        network: reference-network options (its time input is ``c_noise = ln(sigma) / 4``).
        sampler, steps: default ``"edm_heun"`` with 18 steps (35 NFE, EDM's CIFAR-10 setting).
        sampler_options, likelihood_steps, likelihood_trace: see :class:`PathModel`.

    >>> m = EDM((2,), network={"hidden": [16]})
    >>> m.loss(torch.randn(4, 2)).shape
    torch.Size([4])
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="score", section="§2.5", exact_log_prob=True, has_score=True
    )

    def __init__(
        self,
        event_shape: tuple[int, ...],
        num_classes: int = 0,
        sigma_data: float = 0.5,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        network: dict[str, Any] | None = None,
        sampler: str = "edm_heun",
        steps: int = 18,
        sampler_options: dict[str, Any] | None = None,
        likelihood_steps: int | None = None,
        likelihood_trace: str = "auto",
    ):
        if not p_std > 0 or not math.isfinite(p_mean):
            raise ValueError(f"need a finite p_mean and p_std > 0 (EDM: -1.2, 1.2); got {p_std}")
        path = AffinePath("edm", sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
        network_module = build_path_network(tuple(event_shape), num_classes, network)
        super().__init__(
            event_shape,
            path,
            Prediction.X0,
            network_module,
            sampler=sampler,
            steps=steps,
            sampler_options=sampler_options,
            likelihood_steps=likelihood_steps,
            likelihood_trace=likelihood_trace,
        )
        self.field = PathField(
            network_module, path, Prediction.X0, precondition=True, sigma_data=sigma_data
        )
        self.sigma_data, self.p_mean, self.p_std = float(sigma_data), float(p_mean), float(p_std)

    def sample_sigma(self, n: int) -> torch.Tensor:
        """Training noise levels ``(n,)`` from the lognormal law."""
        return edm_sigma(n, self.p_mean, self.p_std, device=self.device, dtype=self.dtype)

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """:func:`edm_loss` at lognormal sigma, ``(batch,)``."""
        x = self.check_input(x)
        return edm_loss(
            self.field,
            x,
            self.sample_sigma(len(x)),
            sigma_data=self.sigma_data,
            cond=self._cond(cond, len(x)),
        )
