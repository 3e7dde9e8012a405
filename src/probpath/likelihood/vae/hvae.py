"""Hierarchical VAE with a top-down inference path (ladder VAE / NVAE style; survey §1.2).

Generative model over ``L`` stochastic layers (``z_1`` nearest the data, ``z_L`` on top):
``p(z_L) = N(0, I)``, ``p(z_l | z_{l+1}) = N(mu_p, sigma_p^2)`` and ``p(x | z_1)``.
Inference shares the top-down path: a deterministic bottom-up pass computes features
``h_1, ..., h_L`` of ``x``; then, top down, ``q(z_L | x)`` comes from ``h_L`` and
``q(z_l | x, z_{>l})`` corrects the prior's parameters with a residual computed from
``(h_l, top-down state)``: ``mu_q = mu_p + dmu``, ``log var_q = log var_p + dlogvar`` (NVAE).
Each layer's KL is analytic given the sampled layer above.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probpath.core.validation import check_event_shape, check_positive_int
from probpath.likelihood.vae.common import (
    ObservationModel,
    gaussian_log_prob,
    kl_diag_gaussians,
    kl_standard_normal,
    standard_normal_log_prob,
)
from probpath.likelihood.vae.vae import VAEBase
from probpath.nn.mlp import MLP, activation

__all__ = ["HierarchicalVAE"]


def _block(in_dim: int, out_dim: int, hidden: Sequence[int], act: str) -> nn.Module:
    return nn.Sequential(MLP(in_dim, out_dim, tuple(hidden), act), activation(act))


def _split(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, log_var = params.chunk(2, dim=-1)
    return mu, log_var.clamp(-30.0, 20.0)


class HierarchicalVAE(VAEBase):
    """VAE with ``L >= 2`` stochastic layers and top-down (ladder) inference.

    Args:
        event_shape: shape of one sample (flattened internally; MLP networks).
        latent_dims: sizes of ``z_1, ..., z_L`` from the data upwards, at least two.
        width: width of the deterministic features in both passes.
        hidden: hidden widths inside each block (``()``: one linear layer per block).
        likelihood, decoder_std, data_range: the decoder distribution (as :class:`VAE`).
        beta, kl_warmup_steps, free_bits, iwae_samples: the objective (as :class:`VAE`);
            free bits apply per latent dimension of every layer.
        sample_noise: sample ``p(x|z_1)`` or return its mean (as :class:`VAE`).
        act: activation name.

    >>> m = HierarchicalVAE((2,), latent_dims=(3, 2), width=8, hidden=())
    >>> m.loss(torch.zeros(4, 2)).shape, m.sample(5).shape
    (torch.Size([4]), torch.Size([5, 2]))

    References:
        Sønderby et al., "Ladder Variational Autoencoders", NeurIPS 2016; Vahdat & Kautz,
        "NVAE: A Deep Hierarchical Variational Autoencoder", NeurIPS 2020.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        latent_dims: Sequence[int] = (16, 8),
        width: int = 128,
        hidden: Sequence[int] = (128,),
        likelihood: str = "gaussian",
        decoder_std: float | None = None,
        data_range: Sequence[float] = (-1.0, 1.0),
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        free_bits: float = 0.0,
        iwae_samples: int = 64,
        sample_noise: bool = True,
        act: str = "silu",
    ):
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        dims = [check_positive_int(d, "latent_dims") for d in latent_dims]
        if len(dims) < 2:
            raise ValueError(
                f"latent_dims must list at least two layers, got {list(latent_dims)}; use VAE "
                "for a single stochastic layer"
            )
        self.latent_dims = tuple(dims)
        width = check_positive_int(width, "width")
        self._init_objective(beta, kl_warmup_steps, free_bits, iwae_samples)
        self.sample_noise = bool(sample_noise)
        n_x = int(torch.Size(self.event_shape).numel())
        n_layers = len(dims)
        # bottom-up deterministic features h_1..h_L
        self.up = nn.ModuleList(
            _block(n_x if i == 0 else width, width, hidden, act) for i in range(n_layers)
        )
        self.q_top = nn.Linear(width, 2 * dims[-1])
        # top-down: state from z_{l+1}, prior head, posterior residual head (l = 1..L-1)
        self.down = nn.ModuleList(
            _block(dims[i + 1], width, hidden, act) for i in range(n_layers - 1)
        )
        self.prior_heads = nn.ModuleList(nn.Linear(width, 2 * dims[i]) for i in range(n_layers - 1))
        self.post_heads = nn.ModuleList(
            nn.Linear(2 * width, 2 * dims[i]) for i in range(n_layers - 1)
        )
        self.decoder = nn.Sequential(
            MLP(dims[0], n_x, tuple(hidden)[::-1] or (width,), act),
            nn.Unflatten(1, self.event_shape),
        )
        self.observation = ObservationModel(self.event_shape, likelihood, decoder_std, data_range)

    @property
    def sampling_nfe(self) -> int:
        """Network evaluations per sample: ``L - 1`` top-down prior blocks and the decoder."""
        return len(self.latent_dims)

    def _prior(self, i: int, z_above: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state = self.down[i](z_above)
        return (state, *_split(self.prior_heads[i](state)))

    def infer(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top-down posterior sample.

        Returns:
            ``z_1`` ``(batch, latent_dims[0])``, ``log q(z|x)`` and ``log p(z)`` summed over
            layers ``(batch,)``, and the per-dimension analytic KLs of all layers
            ``(batch, sum(latent_dims))``.
        """
        hs, h = [], x.flatten(1)
        for block in self.up:
            h = block(h)
            hs.append(h)
        mu, log_var = _split(self.q_top(hs[-1]))
        z = mu + torch.exp(0.5 * log_var) * self._randn(mu.shape, generator)
        log_q = gaussian_log_prob(z, mu, log_var).sum(-1)
        log_p = standard_normal_log_prob(z)
        kls = [kl_standard_normal(mu, log_var)]
        for i in reversed(range(len(self.latent_dims) - 1)):
            state, mu_p, lv_p = self._prior(i, z)
            d_mu, d_lv = self.post_heads[i](torch.cat([hs[i], state], -1)).chunk(2, dim=-1)
            mu_q, lv_q = mu_p + d_mu, (lv_p + d_lv).clamp(-30.0, 20.0)
            z = mu_q + torch.exp(0.5 * lv_q) * self._randn(mu_q.shape, generator)
            log_q = log_q + gaussian_log_prob(z, mu_q, lv_q).sum(-1)
            log_p = log_p + gaussian_log_prob(z, mu_p, lv_p).sum(-1)
            kls.append(kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p))
        return z, log_q, log_p, torch.cat(kls, -1)

    def elbo_terms(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``log p(x|z_1)`` ``(batch,)`` and the layers' analytic KLs ``(batch, sum(dims))``."""
        z1, _, _, kl = self.infer(x, generator)
        return self.observation.log_prob(x, self.decoder(z1)), kl

    def log_weight(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``log p(x|z_1) + log p(z_1..L) - log q(z_1..L|x)`` for one posterior draw."""
        z1, log_q, log_p, _ = self.infer(x, generator)
        return self.observation.log_prob(x, self.decoder(z1)) + log_p - log_q

    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: bool | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling from ``z_L`` down; a draw of ``p(x|z_1)`` if ``noise`` else its
        mean (``None``: the constructor's ``sample_noise``)."""
        n = check_positive_int(n, "n")
        z = self._randn((n, self.latent_dims[-1]), generator)
        for i in reversed(range(len(self.latent_dims) - 1)):
            _, mu_p, lv_p = self._prior(i, z)
            z = mu_p + torch.exp(0.5 * lv_p) * self._randn(mu_p.shape, generator)
        out = self.decoder(z)
        return self.observation.draw(out, self.sample_noise if noise is None else noise, generator)
