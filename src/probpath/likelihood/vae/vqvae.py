"""VQ-VAE: discrete latent codes with a learned autoregressive prior (survey §1.2).

The encoder maps ``x`` to ``T`` vectors ``z_e``; each is replaced by its nearest codebook
vector ``e_k`` (vector quantisation). Gradients pass the quantiser by the straight-through
estimator, the encoder is pulled towards its codes by the commitment loss
``beta_c |z_e - sg(e_k)|^2``, and the codebook follows the encoder outputs by exponential
moving averages (EMA) instead of a codebook loss; codes that fall out of use are restarted at
random encoder outputs. A small autoregressive model ``pi(k_1..k_T)`` over the code indices
(trained jointly on the detached indices) makes the model generative.

``log_prob`` is the ELBO with the deterministic one-hot posterior
``q(k|x) = 1[k = k(x)]``, i.e. ``log p(x | e_{k(x)}) + log pi(k(x)) <= log p(x)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from probpath.core.model import Capabilities, Model
from probpath.core.validation import (
    check_choice,
    check_event_shape,
    check_positive_int,
    check_probability,
    check_tensor,
)
from probpath.likelihood.vae.common import ObservationModel
from probpath.nn.conv import ConvDecoder, ConvEncoder, decoder_network, encoder_network

__all__ = ["VectorQuantizer", "CodePrior", "VQVAE"]


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantiser with an EMA codebook and dead-code restart.

    Args:
        num_codes: codebook size ``K``.
        code_dim: dimension ``D`` of each code.
        decay: EMA decay of the code counts and sums.
        dead_threshold: a code whose EMA count falls below this is restarted at a random
            encoder output of the current batch (0 disables restarts).
        eps: Laplace smoothing of the counts.

    The codebook is a buffer, updated only in training mode (no gradient); on the first
    training batch it is initialised from random encoder outputs.

    Shapes: ``forward(z_e)``: ``(N, D) -> (z_q (N, D), indices (N,))``.
    """

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        decay: float = 0.99,
        dead_threshold: float = 1e-2,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.num_codes = check_positive_int(num_codes, "num_codes")
        self.decay = check_probability(decay, "ema_decay")
        self.dead_threshold = float(dead_threshold)
        self.eps = float(eps)
        codebook = torch.randn(num_codes, code_dim, generator=torch.Generator().manual_seed(0))
        self.register_buffer("codebook", codebook)
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("ema_sum", codebook.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row: ``(N, D) -> (N,)``."""
        e = self.codebook.to(z_e.dtype)
        dist = z_e.pow(2).sum(1, keepdim=True) - 2 * z_e @ e.T + e.pow(2).sum(1)[None]
        return dist.argmin(1)

    @torch.no_grad()
    def _update(self, z_e: torch.Tensor, indices: torch.Tensor) -> None:
        z_e = z_e.to(self.codebook.dtype)
        if not bool(self.initialized):
            pick = torch.randint(0, len(z_e), (self.num_codes,), device=z_e.device)
            self.codebook.copy_(z_e[pick])
            self.ema_sum.copy_(z_e[pick])
            self.ema_count.fill_(1.0)
            self.initialized.fill_(True)
            return
        one_hot = F.one_hot(indices, self.num_codes).to(z_e.dtype)
        self.ema_count.mul_(self.decay).add_(one_hot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(one_hot.T @ z_e, alpha=1 - self.decay)
        n = self.ema_count.sum()
        count = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
        self.codebook.copy_(self.ema_sum / count[:, None])
        dead = self.ema_count < self.dead_threshold
        if self.dead_threshold > 0 and bool(dead.any()):
            pick = torch.randint(0, len(z_e), (int(dead.sum()),), device=z_e.device)
            self.codebook[dead] = z_e[pick]
            self.ema_sum[dead] = z_e[pick]
            self.ema_count[dead] = 1.0

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise; in training mode also update the EMA codebook first."""
        if self.training and torch.is_grad_enabled():
            self._update(z_e.detach(), self.nearest(z_e.detach()))
        indices = self.nearest(z_e.detach())
        return self.codebook[indices].to(z_e.dtype), indices


class CodePrior(nn.Module):
    """Autoregressive prior ``pi(k_1..k_T) = prod_t pi(k_t | k_<t)`` over code indices (GRU).

    Shapes: ``log_prob(k)``: ``(batch, T) -> (batch,)``; ``sample(n, T)`` -> ``(n, T)``.
    """

    def __init__(self, num_codes: int, hidden: int = 128):
        super().__init__()
        self.num_codes = num_codes
        self.embed = nn.Embedding(num_codes + 1, hidden)  # the last row is the start token
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_codes)

    def _start(self, n: int, device) -> torch.Tensor:
        return torch.full((n, 1), self.num_codes, dtype=torch.long, device=device)

    def log_prob(self, k: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([self._start(len(k), k.device), k[:, :-1]], 1)
        logits = self.head(self.rnn(self.embed(inputs))[0])
        return -F.cross_entropy(logits.transpose(1, 2), k, reduction="none").sum(1)

    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = self.head.weight.device
        token, state, out = self._start(n, device), None, []
        for _ in range(length):
            h, state = self.rnn(self.embed(token), state)
            probs = torch.softmax(self.head(h[:, -1]).double(), -1)
            token = torch.multinomial(probs, 1, generator=generator)
            out.append(token)
        return torch.cat(out, 1)


class VQVAE(Model):
    """Vector-quantised VAE with EMA codebook and a learned autoregressive prior.

    Args:
        event_shape: shape of one sample.
        num_codes: codebook size ``K``.
        code_dim: dimension of each code vector.
        num_tokens: number ``T`` of codes per sample for ``architecture="mlp"`` (the conv
            encoder uses one code per cell of its ``H/2^s x W/2^s`` feature map).
        hidden: MLP widths; ``channels``: convolution widths; ``architecture``: "mlp"/"conv".
        commitment: weight ``beta_c`` of the commitment loss.
        ema_decay: decay of the codebook EMA.
        dead_code_threshold: EMA count below which a code is restarted.
        decoder_std: fixed Gaussian decoder std, or ``None`` to learn one per dimension.
        prior_hidden: width of the prior's GRU.
        sample_noise: sample ``p(x|e_k)`` or return its mean (as :class:`VAE`).
        act: activation name.

    ``loss`` = ``-log p(x|e_k)`` + commitment + ``-log pi(k)`` (prior fitted on detached
    indices), per sample. Sampling draws ``k ~ pi`` and decodes the codes.

    References:
        van den Oord et al., "Neural Discrete Representation Learning", NeurIPS 2017;
        Razavi et al., "Generating Diverse High-Fidelity Images with VQ-VAE-2", 2019.
    """

    capabilities = Capabilities(route="likelihood", section="§1.2", log_prob_bound=True)

    def __init__(
        self,
        event_shape: Sequence[int],
        num_codes: int = 32,
        code_dim: int = 8,
        num_tokens: int = 4,
        hidden: Sequence[int] = (128, 128),
        architecture: str = "mlp",
        channels: Sequence[int] = (32, 64),
        commitment: float = 0.25,
        ema_decay: float = 0.99,
        dead_code_threshold: float = 1e-2,
        decoder_std: float | None = None,
        prior_hidden: int = 128,
        sample_noise: bool = True,
        act: str = "silu",
    ):
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        self.architecture = check_choice(architecture, "architecture", ("mlp", "conv"))
        self.code_dim = check_positive_int(code_dim, "code_dim")
        if commitment < 0:
            raise ValueError(f"commitment must be >= 0, got {commitment}")
        self.commitment = float(commitment)
        self.sample_noise = bool(sample_noise)
        if architecture == "conv":
            if len(self.event_shape) != 3:
                raise ValueError("architecture='conv' needs image data of shape (C, H, W)")
            c = self.event_shape[0]
            enc = ConvEncoder(c, self.event_shape[1:], None, channels, act)
            self.grid = enc.feature_shape[1:]
            self.encoder = nn.Sequential(enc, nn.Conv2d(channels[-1], code_dim, 1))
            dec = ConvDecoder(None, c, self.event_shape[1:], tuple(channels)[::-1], act)
            self.decoder = nn.Sequential(nn.Conv2d(code_dim, channels[-1], 1), dec)
            self.num_tokens = self.grid[0] * self.grid[1]
        else:
            self.num_tokens = check_positive_int(num_tokens, "num_tokens")
            self.grid = None
            self.encoder = encoder_network(
                self.event_shape, self.num_tokens * code_dim, "mlp", hidden, channels, act
            )
            self.decoder = decoder_network(
                self.num_tokens * code_dim, self.event_shape, "mlp", hidden, channels, act
            )
        self.quantizer = VectorQuantizer(num_codes, code_dim, ema_decay, dead_code_threshold)
        self.prior = CodePrior(num_codes, check_positive_int(prior_hidden, "prior_hidden"))
        self.observation = ObservationModel(self.event_shape, "gaussian", decoder_std)

    @property
    def sampling_nfe(self) -> int:
        """Network evaluations per sample: ``T`` prior steps and one decoder pass."""
        return self.num_tokens + 1

    def _check(self, x) -> torch.Tensor:
        x = check_tensor(x, "x", event_shape=self.event_shape)
        return x.to(device=self.device, dtype=next(self.parameters()).dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous encoder outputs ``z_e``, ``(batch, T, code_dim)``."""
        h = self.encoder(x)
        if self.grid is not None:
            return h.flatten(2).transpose(1, 2)
        return h.reshape(len(x), self.num_tokens, self.code_dim)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Decoder mean from quantised codes ``(batch, T, code_dim)``."""
        if self.grid is not None:
            return self.decoder(z_q.transpose(1, 2).reshape(len(z_q), self.code_dim, *self.grid))
        return self.decoder(z_q.flatten(1))

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes ``(batch, T, code_dim)`` and indices ``(batch, T)``."""
        z_q, idx = self.quantizer(z_e.reshape(-1, self.code_dim))
        return z_q.reshape(z_e.shape), idx.reshape(z_e.shape[:2])

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction NLL + commitment + prior NLL of the codes, ``(batch,)``."""
        x = self._check(x)
        z_e = self.encode(x)
        z_q, idx = self.quantize(z_e)
        z_st = z_e + (z_q - z_e).detach()  # straight-through estimator
        rec = -self.observation.log_prob(x, self.decode(z_st))
        commit = self.commitment * (z_e - z_q.detach()).pow(2).flatten(1).sum(1)
        return rec + commit - self.prior.log_prob(idx.detach())

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Lower bound ``log p(x | e_{k(x)}) + log pi(k(x))`` (one-hot posterior ELBO)."""
        x = self._check(x)
        z_q, idx = self.quantize(self.encode(x))
        return self.observation.log_prob(x, self.decode(z_q)) + self.prior.log_prob(idx)

    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: bool | None = None,
    ) -> torch.Tensor:
        """Codes from the autoregressive prior, decoded: a draw of ``p(x|e_k)`` if ``noise``
        else the mean (``None``: the constructor's ``sample_noise``)."""
        n = check_positive_int(n, "n")
        idx = self.prior.sample(n, self.num_tokens, generator)
        z_q = self.quantizer.codebook[idx].to(next(self.parameters()).dtype)
        out = self.decode(z_q)
        return self.observation.draw(out, self.sample_noise if noise is None else noise, generator)
