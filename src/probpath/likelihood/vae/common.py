"""Pieces shared by the VAE family: diagonal-Gaussian densities and KLs, the decoder's
observation model p(x|z), and the KL weight with warm-up and free bits (survey §1.2, Eq. 16).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from probpath.core.validation import check_choice
from probpath.likelihood.flows.base import standard_normal_log_prob

__all__ = [
    "gaussian_log_prob",
    "standard_normal_log_prob",
    "kl_diag_gaussians",
    "kl_standard_normal",
    "free_bits_kl",
    "kl_weight",
    "log_mean_exp",
    "ObservationModel",
]

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise ``log N(x; mean, exp(log_var))`` (no reduction)."""
    return -0.5 * (_LOG_2PI + log_var + (x - mean).pow(2) * torch.exp(-log_var))


def kl_diag_gaussians(
    mu_q: torch.Tensor, log_var_q: torch.Tensor, mu_p: torch.Tensor, log_var_p: torch.Tensor
) -> torch.Tensor:
    """Elementwise ``KL(N(mu_q, var_q) || N(mu_p, var_p))`` for diagonal Gaussians."""
    return 0.5 * (
        log_var_p
        - log_var_q
        + (torch.exp(log_var_q) + (mu_q - mu_p).pow(2)) * torch.exp(-log_var_p)
        - 1.0
    )


def kl_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise analytic ``KL(N(mu, exp(log_var)) || N(0, 1))`` (the VAE's KL, Eq. 16)."""
    return 0.5 * (mu.pow(2) + torch.exp(log_var) - 1.0 - log_var)


def free_bits_kl(kl: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Per-sample KL with "free bits" (Kingma et al., 2016): ``(batch, d) -> (batch,)``.

    A latent dimension whose batch-mean KL is below ``free_bits`` nats contributes the
    constant ``free_bits`` (no gradient), so the encoder is not pushed to collapse it; the
    batch mean of the result is exactly ``sum_j max(mean_i KL_ij, free_bits)``.
    """
    if free_bits <= 0:
        return kl.sum(-1)
    active = kl.mean(0, keepdim=True).detach() > free_bits
    # dimensions below the threshold contribute the constant free_bits, detached from the graph
    clamped = torch.where(active, kl, torch.full_like(kl, free_bits))
    return clamped.sum(-1)


def kl_weight(step: int, beta: float, warmup_steps: int) -> float:
    """KL weight ``beta * min(1, step / warmup_steps)`` (KL warm-up / annealing)."""
    if warmup_steps <= 0:
        return float(beta)
    return float(beta) * min(1.0, step / warmup_steps)


def log_mean_exp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``log(mean(exp(log_w)))`` along ``dim``, computed stably (the IWAE estimator)."""
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])


class ObservationModel(nn.Module):
    """The decoder's likelihood ``p(x | z)`` given the decoder output ``out``.

    * ``"gaussian"``: ``out`` is the mean; the standard deviation is ``decoder_std`` or, if
      ``None``, a learned per-dimension parameter (initialised to 1).
    * ``"bernoulli"``: ``out`` are logits for data mapped to ``[0, 1]`` by
      ``(x - low) / (high - low)`` with ``(low, high) = data_range``; the default
      ``(-1, 1)`` matches probpath's image scaling. ``log_prob`` is then the log-pmf of binary
      data in ``{low, high}``; for grey values it is the usual cross-entropy, not a density.

    Args:
        event_shape: shape of one sample.
        kind: ``"gaussian"`` or ``"bernoulli"``.
        decoder_std: fixed Gaussian standard deviation, or ``None`` to learn it.
        data_range: ``(low, high)`` of the data, used by the Bernoulli decoder only.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        kind: str = "gaussian",
        decoder_std: float | None = None,
        data_range: Sequence[float] = (-1.0, 1.0),
    ):
        super().__init__()
        self.kind = check_choice(kind, "decoder", ("gaussian", "bernoulli"))
        self.low, self.high = (float(v) for v in data_range)
        if not self.high > self.low:
            raise ValueError(f"data_range must be (low, high) with high > low, got {data_range}")
        self.log_std = None
        self.fixed_log_std = None
        if kind == "gaussian":
            if decoder_std is None:
                self.log_std = nn.Parameter(torch.zeros(tuple(event_shape)))
            else:
                if not decoder_std > 0:
                    raise ValueError(f"decoder_std must be positive or None, got {decoder_std}")
                self.fixed_log_std = math.log(decoder_std)

    def _log_std(self, like: torch.Tensor) -> torch.Tensor:
        if self.log_std is not None:
            return self.log_std.clamp(min=-7.0)
        return torch.full_like(like, self.fixed_log_std)

    def log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` summed over the event: ``(batch, *event) -> (batch,)``."""
        if self.kind == "bernoulli":
            x01 = ((x - self.low) / (self.high - self.low)).clamp(0.0, 1.0)
            lp = -F.binary_cross_entropy_with_logits(out, x01, reduction="none")
        else:
            lp = gaussian_log_prob(x, out, 2 * self._log_std(out))
        return lp.flatten(1).sum(-1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """``E[x | z]`` in data units."""
        if self.kind == "bernoulli":
            return self.low + (self.high - self.low) * torch.sigmoid(out)
        return out

    def draw(
        self, out: torch.Tensor, noise: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A draw of ``p(x | z)`` if ``noise``, else the mean ``E[x | z]``."""
        return self.sample(out, generator) if noise else self.mean(out)

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A draw from ``p(x | z)``."""
        if self.kind == "bernoulli":
            bits = torch.bernoulli(torch.sigmoid(out), generator=generator)
            return self.low + (self.high - self.low) * bits
        noise = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        return out + torch.exp(self._log_std(out)) * noise
