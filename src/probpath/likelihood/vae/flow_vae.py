"""VAE whose posterior is a Gaussian pushed through planar or radial flows (survey §3.1, Eq. 54).

``z_0 ~ q_0(z|x) = N(mu(x), diag(sigma(x)^2))`` and ``z_K = f_K o ... o f_1(z_0)``, so that
``log q_K(z_K|x) = log q_0(z_0|x) - sum_k log|det df_k/dz|`` (Eq. 53). The free energy of
Eq. (54), ``F(x) = E_{q_0}[log q_0(z_0) - log p(x, z_K) - sum_k log|det J_k|]``, is the
negative ELBO that :meth:`FlowVAE.loss` estimates with one sample.

The transforms are :class:`~probpath.likelihood.flows.PlanarTransform` /
:class:`~probpath.likelihood.flows.RadialTransform`. With ``amortized=True`` (the default,
as in Rezende & Mohamed) an inference network emits each layer's parameters from ``x``:
``θ_k(x) = θ_k + Δ_k(x)``, with ``Δ`` an MLP whose last layer starts at zero, so training
starts from the shared parameters ``θ_k``; with ``amortized=False`` only ``θ_k`` are used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from probpath.core.model import Capabilities
from probpath.core.validation import check_choice, check_positive_int
from probpath.likelihood.flows.planar import PlanarTransform, RadialTransform
from probpath.likelihood.vae.vae import VAE
from probpath.nn.mlp import MLP

__all__ = ["FlowVAE"]


class FlowVAE(VAE):
    """VAE with a normalizing-flow posterior ``q_K(z|x)`` (Rezende & Mohamed, 2015).

    Args:
        event_shape: shape of one sample.
        flow: ``"planar"`` (Eq. 52–53) or ``"radial"``.
        flow_length: number ``K`` of flow layers.
        **kwargs: every other :class:`VAE` argument (``latent_dim``, ``hidden``, ...).

    The KL term has no closed form here; the loss and :meth:`elbo` use the one-sample
    estimate ``log q_K(z_K|x) - log p(z_K)``, and ``log_prob`` the IWAE bound with the same
    posterior.

    >>> m = FlowVAE((2,), flow="radial", flow_length=2, latent_dim=2, hidden=(8,))
    >>> m.loss(torch.zeros(3, 2)).shape
    torch.Size([3])

    References:
        Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.
    """

    capabilities = Capabilities(route="likelihood", section="§3.1", log_prob_bound=True)
    analytic_kl = False

    def __init__(
        self,
        event_shape: Sequence[int],
        flow: str = "planar",
        flow_length: int = 4,
        amortized: bool = True,
        **kwargs,
    ):
        super().__init__(event_shape, **kwargs)
        check_choice(flow, "flow", ("planar", "radial"))
        flow_length = check_positive_int(flow_length, "flow_length")
        cls = PlanarTransform if flow == "planar" else RadialTransform
        self.flows = nn.ModuleList(cls(self.latent_dim) for _ in range(flow_length))
        self.amortized = bool(amortized)
        if self.amortized:
            n_out = sum(f.n_params for f in self.flows)
            hidden = tuple(kwargs.get("hidden", (128, 128)))
            self.flow_net = MLP(math.prod(self.event_shape), n_out, hidden, zero_last=True)

    def flow_params(self, x: torch.Tensor) -> list[tuple[torch.Tensor, ...] | None]:
        """Per-layer parameters of the posterior flow for ``x`` (``None``: shared ones)."""
        if not self.amortized:
            return [None] * len(self.flows)
        delta = self.flow_net(x.flatten(1)).split([f.n_params for f in self.flows], dim=1)
        return [f.split(f.own_params() + d) for f, d in zip(self.flows, delta)]

    def q_sample(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z_K`` and ``log q_K(z_K|x) = log q_0(z_0|x) - sum_k log|det J_k|`` (Eq. 53), with
        the base Gaussian's ``(mu, log_var)``."""
        z, log_q, mu, log_var = super().q_sample(x, generator)
        for f, params in zip(self.flows, self.flow_params(x)):
            z, logdet = f(z, params)
            log_q = log_q - logdet
        return z, log_q, mu, log_var
