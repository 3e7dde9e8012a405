"""The variational autoencoder and beta-VAE (survey §1.2, Eq. 15–16).

The encoder ``q_phi(z|x) = N(mu_phi(x), diag(sigma_phi(x)^2))`` and decoder ``p_theta(x|z)``
are trained by maximising the ELBO of Eq. (16),
``E_q[log p(x|z)] - KL(q(z|x) || p(z))``, with the reparameterisation
``z = mu + sigma * eps`` and the analytic KL to ``p(z) = N(0, I)``. ``log_prob`` returns the
importance-weighted bound (IWAE, Burda et al., 2016) with ``k`` samples, a *lower bound* on
``log p(x)`` that increases with ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probpath.core.model import Capabilities, Model, check_labels
from probpath.core.validation import (
    check_choice,
    check_event_shape,
    check_positive_int,
    check_tensor,
)
from probpath.likelihood.vae.common import (
    ObservationModel,
    free_bits_kl,
    gaussian_log_prob,
    kl_standard_normal,
    kl_weight,
    log_mean_exp,
    standard_normal_log_prob,
)
from probpath.nn.conv import decoder_network, encoder_network

__all__ = ["VAEBase", "VAE", "BetaVAE", "latent_interpolation", "latent_traversal"]


class VAEBase(Model):
    """What every VAE shares: the (beta, warm-up, free-bits) loss, the ELBO and the IWAE bound.

    Subclasses define :meth:`elbo_terms` (one-sample reconstruction term and KL) and
    :meth:`log_weight` (one importance weight ``log p(x, z) - log q(z|x)``, ``z ~ q``), and
    set ``event_shape``, ``beta``, ``kl_warmup_steps``, ``free_bits``, ``iwae_samples`` and a
    ``num_steps`` buffer.
    """

    capabilities = Capabilities(route="likelihood", section="§1.2", log_prob_bound=True)

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _check(self, x) -> torch.Tensor:
        x = check_tensor(x, "x", event_shape=self.event_shape)
        return x.to(device=self.device, dtype=self._dtype())

    def _randn(self, shape, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=self.device, dtype=self._dtype())

    def _init_objective(
        self, beta: float, kl_warmup_steps: int, free_bits: float, iwae_samples: int
    ) -> None:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if kl_warmup_steps < 0 or free_bits < 0:
            raise ValueError("kl_warmup_steps and free_bits must be >= 0")
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.free_bits = float(free_bits)
        self.iwae_samples = check_positive_int(iwae_samples, "iwae_samples")
        # number of training calls of loss(), for KL warm-up (saved with the weights)
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))

    def _labels(self, cond, n: int) -> torch.Tensor | None:
        """Validated labels of a conditional VAE (``num_classes > 0``), else an error."""
        return check_labels(
            cond, n, getattr(self, "num_classes", 0), type(self).__name__, device=self.device
        )

    def _cond_kwargs(self, cond, n: int) -> dict:
        """``{"cond": labels}`` for the hooks of a conditional VAE, ``{}`` otherwise."""
        cond = self._labels(cond, n)
        return {} if cond is None else {"cond": cond}

    def elbo_terms(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-sample ``log p(x|z)`` ``(batch,)`` and KL terms ``(batch, g)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement elbo_terms()")

    def log_weight(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One importance weight ``log p(x, z) - log q(z|x)`` with ``z ~ q(z|x)``, ``(batch,)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement log_weight()")

    def current_kl_weight(self) -> float:
        """``beta`` times the warm-up factor at the current training step."""
        return kl_weight(int(self.num_steps), self.beta, self.kl_warmup_steps)

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Negative ELBO per sample with the KL weighted by ``beta`` (and warm-up, free bits).

        Each call in training mode with gradients enabled advances the warm-up counter.
        """
        x = self._check(x)
        rec, kl = self.elbo_terms(x, **self._cond_kwargs(cond, len(x)))
        weight = self.current_kl_weight()
        if self.training and torch.is_grad_enabled():
            self.num_steps += 1
        return -(rec - weight * free_bits_kl(kl, self.free_bits))

    def elbo(
        self,
        x: torch.Tensor,
        n_samples: int = 1,
        generator: torch.Generator | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ELBO of Eq. (16) (``beta = 1``, no free bits), averaged over ``n_samples``."""
        x = self._check(x)
        n_samples = check_positive_int(n_samples, "n_samples")
        kw = self._cond_kwargs(cond, len(x))
        total = 0.0
        for _ in range(n_samples):
            rec, kl = self.elbo_terms(x, generator, **kw)
            total = total + (rec - kl.sum(-1))
        return total / n_samples

    def log_prob(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """IWAE lower bound ``log (1/k) sum_i p(x, z_i) / q(z_i|x) <= log p(x)``, ``(batch,)``.

        Not the exact log-density: a stochastic lower bound whose expectation increases
        with ``k`` (default :attr:`iwae_samples`) towards ``log p(x)``.
        """
        x = self._check(x)
        k = self.iwae_samples if k is None else check_positive_int(k, "k")
        kw = self._cond_kwargs(cond, len(x))
        log_w = torch.stack([self.log_weight(x, generator, **kw) for _ in range(k)])
        return log_mean_exp(log_w, 0)


class VAE(VAEBase):
    """Variational autoencoder with a diagonal-Gaussian encoder (Kingma & Welling, 2014).

    Args:
        event_shape: shape of one sample, ``(D,)`` or ``(C, H, W)``.
        latent_dim: dimension ``d`` of ``z``.
        hidden: MLP widths (encoder order; the decoder mirrors them). ``()`` gives linear
            maps, i.e. probabilistic PCA with a Gaussian decoder.
        architecture: ``"mlp"`` (any event shape, flattened) or ``"conv"`` (images).
        channels: convolution widths for ``architecture="conv"``.
        likelihood: decoder distribution, ``"gaussian"`` or ``"bernoulli"`` (see
            :class:`~probpath.likelihood.vae.common.ObservationModel`; Bernoulli maps data in
            ``data_range`` to ``[0, 1]`` internally).
        decoder_std: fixed Gaussian decoder standard deviation; ``None`` learns one per
            dimension.
        data_range: ``(low, high)`` of the data for the Bernoulli decoder.
        beta: weight of the KL term (``beta > 1`` is the beta-VAE).
        kl_warmup_steps: the KL weight ramps linearly from 0 to ``beta`` over this many
            training calls of :meth:`loss` (0 disables warm-up).
        free_bits: nats per latent dimension below which the KL is not penalised (0 off).
        iwae_samples: default ``k`` of the IWAE bound returned by :meth:`log_prob`.
        sample_noise: :meth:`sample` draws from ``p(x|z)`` (True: a sample of the model's
            ``p(x)``) or returns the decoder mean ``E[x|z]`` (False: the usual, smoother
            picture for images).
        act: activation name.
        num_classes: ``K > 0`` makes it a conditional VAE (Sohn et al. 2015) of ``p(x | c)``:
            the decoder reads ``[z, e_c]`` (a learned label embedding of size ``latent_dim``)
            and the prior stays ``N(0, I)``; the encoder ``q(z | x)`` does not need the label
            (the ELBO of ``log p(x | c)`` is valid for any ``q``). ``loss``, ``log_prob``
            and ``sample`` then take ``cond`` labels ``(batch,)``.

    Shapes: ``loss(x)``: ``(batch, *event_shape) -> (batch,)``; ``sample(n)`` ->
    ``(n, *event_shape)``; latents ``(batch, latent_dim)``.

    >>> vae = VAE((2,), latent_dim=2, hidden=(8,))
    >>> vae.loss(torch.zeros(3, 2)).shape, vae.log_prob(torch.zeros(3, 2), k=4).shape
    (torch.Size([3]), torch.Size([3]))

    References:
        Kingma & Welling, "Auto-Encoding Variational Bayes", 2014; Burda et al.,
        "Importance Weighted Autoencoders", 2016; Higgins et al., "beta-VAE", 2017;
        Kingma et al., "Improved Variational Inference with Inverse Autoregressive Flow"
        (free bits), 2016.
    """

    capabilities = Capabilities(
        route="likelihood", section="§1.2", log_prob_bound=True, accepts_labels=True
    )
    #: the KL term has a closed form (overridden by posteriors without one)
    analytic_kl: bool = True

    def __init__(
        self,
        event_shape: Sequence[int],
        latent_dim: int = 8,
        hidden: Sequence[int] = (128, 128),
        architecture: str = "mlp",
        channels: Sequence[int] = (32, 64),
        likelihood: str = "gaussian",
        decoder_std: float | None = None,
        data_range: Sequence[float] = (-1.0, 1.0),
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        free_bits: float = 0.0,
        iwae_samples: int = 64,
        sample_noise: bool = True,
        act: str = "silu",
        num_classes: int = 0,
    ):
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        check_choice(architecture, "architecture", ("mlp", "conv"))
        self._init_objective(beta, kl_warmup_steps, free_bits, iwae_samples)
        self.sample_noise = bool(sample_noise)
        self.encoder = encoder_network(
            self.event_shape, 2 * self.latent_dim, architecture, hidden, channels, act
        )
        self.num_classes = int(num_classes)
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if self.num_classes:
            self.label_embed = nn.Embedding(self.num_classes, self.latent_dim)
        self.decoder = decoder_network(
            self.latent_dim * (2 if self.num_classes else 1),
            self.event_shape,
            architecture,
            hidden,
            channels,
            act,
        )
        self.observation = ObservationModel(self.event_shape, likelihood, decoder_std, data_range)

    @property
    def sampling_nfe(self) -> int:
        """Network evaluations per sample: one decoder pass."""
        return 1

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mu, log_var)``, each ``(batch, latent_dim)``."""
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        return mu, log_var.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder output (Gaussian mean or Bernoulli logits), ``(batch, *event_shape)``;
        a conditional VAE needs the labels ``cond`` ``(batch,)``."""
        if not self.num_classes:
            return self.decoder(z)
        if cond is None:
            raise ValueError(
                f"this {type(self).__name__} is conditional (num_classes={self.num_classes}): "
                "pass cond=labels"
            )
        return self.decoder(torch.cat([z, self.label_embed(cond).to(z.dtype)], dim=-1))

    def posterior_sample(
        self,
        mu: torch.Tensor,
        log_var: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised ``z ~ q(z|x)`` and ``log q(z|x)``: ``(batch, d), (batch,)``."""
        z = mu + torch.exp(0.5 * log_var) * self._randn(mu.shape, generator)
        return z, gaussian_log_prob(z, mu, log_var).sum(-1)

    def q_sample(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z ~ q(z|x)``, ``log q(z|x)`` and the Gaussian's ``(mu, log_var)`` for ``x``."""
        mu, log_var = self.encode(x)
        z, log_q = self.posterior_sample(mu, log_var, generator)
        return z, log_q, mu, log_var

    def elbo_terms(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        cond: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-sample reconstruction term ``log p(x|z)`` ``(batch,)`` and KL ``(batch, g)``.

        The KL is analytic per latent dimension (``g = latent_dim``) when
        :attr:`analytic_kl`, else the one-sample estimate ``log q(z|x) - log p(z)``
        (``g = 1``).
        """
        z, log_q, mu, log_var = self.q_sample(x, generator)
        rec = self.observation.log_prob(x, self.decode(z, cond))
        if self.analytic_kl:
            return rec, kl_standard_normal(mu, log_var)
        return rec, (log_q - standard_normal_log_prob(z))[:, None]

    def log_weight(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``log p(x|z) + log p(z) - log q(z|x)`` for one ``z ~ q(z|x)``, ``(batch,)``."""
        z, log_q, _, _ = self.q_sample(x, generator)
        log_px = self.observation.log_prob(x, self.decode(z, cond))
        return log_px + standard_normal_log_prob(z) - log_q

    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: bool | None = None,
    ) -> torch.Tensor:
        """``z ~ N(0, I)`` decoded: a draw of ``p(x|z)`` if ``noise`` else the decoder mean
        (``noise=None`` uses the constructor's ``sample_noise``)."""
        n = check_positive_int(n, "n")
        cond = self._labels(cond, n)
        out = self.decode(self._randn((n, self.latent_dim), generator), cond)
        return self.observation.draw(out, self.sample_noise if noise is None else noise, generator)


class BetaVAE(VAE):
    """beta-VAE: the VAE with the KL term weighted by ``beta > 1`` (Higgins et al., 2017).

    A larger ``beta`` trades reconstruction for a posterior closer to the factorised prior,
    which encourages disentangled latent factors (survey §1.2, improvements). Every other
    argument is :class:`VAE`'s.
    """

    def __init__(self, event_shape: Sequence[int], beta: float = 4.0, **kwargs):
        super().__init__(event_shape, beta=beta, **kwargs)


@torch.no_grad()
def latent_interpolation(
    model: VAE, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8
) -> torch.Tensor:
    """Decode the straight line between the posterior means of ``x_a`` and ``x_b``.

    Args:
        model: a trained VAE.
        x_a, x_b: two samples, each of shape ``event_shape`` (or ``(1, *event_shape)``).
        steps: number of points on the line, ends included.

    Returns:
        ``(steps, *event_shape)`` decoder means.
    """
    steps = check_positive_int(steps, "steps")
    x = torch.stack(
        [
            torch.as_tensor(x_a).reshape(model.event_shape),
            torch.as_tensor(x_b).reshape(model.event_shape),
        ]
    )
    mu, _ = model.encode(model._check(x))
    w = torch.linspace(0, 1, steps, device=mu.device, dtype=mu.dtype)[:, None]
    return model.observation.mean(model.decode((1 - w) * mu[0] + w * mu[1]))


@torch.no_grad()
def latent_traversal(
    model: VAE, x: torch.Tensor, span: float = 3.0, steps: int = 7
) -> torch.Tensor:
    """Vary one latent coordinate at a time around the posterior mean of ``x``.

    Returns:
        ``(latent_dim, steps, *event_shape)``: row ``j`` sets ``z_j`` to ``steps`` values in
        ``[-span, span]`` while the other coordinates stay at ``mu(x)``.
    """
    steps = check_positive_int(steps, "steps")
    mu, _ = model.encode(model._check(torch.as_tensor(x).reshape(1, *model.event_shape)))
    d = model.latent_dim
    values = torch.linspace(-span, span, steps, device=mu.device, dtype=mu.dtype)
    z = mu.repeat(d * steps, 1).reshape(d, steps, d)
    idx = torch.arange(d, device=mu.device)
    z[idx, :, idx] = values
    out = model.observation.mean(model.decode(z.reshape(d * steps, d)))
    return out.reshape(d, steps, *model.event_shape)
