"""Generative adversarial networks: GAN, WGAN-GP and the conditional GAN (survey §1.3, Eq. 17).

A generator ``G(z)``, ``z ~ N(0, I)``, and a discriminator (critic) ``D(x)`` play a two-player
game. With the original minimax value ``E log D(x) + E log(1 - D(G(z)))`` the optimal
discriminator turns the generator's objective into ``2 JSD(p_data || p_G) - log 4``
(Eq. 17); the non-saturating generator loss ``-log D(G(z))`` has the same fixed point and
stronger early gradients. WGAN replaces the JSD by the Wasserstein-1 distance, estimated by
a critic kept near 1-Lipschitz with a gradient penalty.

The density of a GAN is implicit: ``log_prob`` raises ``NotImplementedError`` (survey §4);
evaluate GANs with sample-based metrics. Training uses two optimizers through
``train_step(x, cond, step, update)`` (see :class:`probpath.core.Model`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from probpath.core.broadcast import append_dims
from probpath.core.model import Capabilities, Model, OptimizerGroup, check_labels
from probpath.core.validation import (
    check_choice,
    check_event_shape,
    check_positive_int,
    check_tensor,
)
from probpath.nn.conv import decoder_network, encoder_network
from probpath.nn.mlp import activation

__all__ = [
    "GAN_LOSSES",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "apply_spectral_norm",
    "Discriminator",
    "GAN",
    "WGAN",
    "ConditionalGAN",
    "IMPLICIT_DENSITY_MESSAGE",
]

GAN_LOSSES = ("minimax", "non-saturating", "wasserstein", "least-squares")

IMPLICIT_DENSITY_MESSAGE = (
    "{name} is an implicit model: the generator defines p_G only as the push-forward of "
    "N(0, I), with no tractable density (survey §4, implicit likelihood); evaluate it with "
    "sample-based metrics (MMD, sliced Wasserstein, Frechet distance) instead of log_prob"
)


def discriminator_loss(kind: str, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Per-sample discriminator loss from logits / critic values ``(batch,)``.

    * minimax and non-saturating: ``-log D(x) - log(1 - D(G(z)))`` with ``D = sigmoid``;
    * wasserstein: ``D(G(z)) - D(x)`` (the critic maximises the W1 estimate);
    * least-squares (LSGAN): ``(D(x) - 1)^2 + D(G(z))^2``.
    """
    if kind == "wasserstein":
        return d_fake - d_real
    if kind == "least-squares":
        return (d_real - 1).pow(2) + d_fake.pow(2)
    return F.softplus(-d_real) + F.softplus(d_fake)


def generator_loss(kind: str, d_fake: torch.Tensor) -> torch.Tensor:
    """Per-sample generator loss ``(batch,)``.

    * minimax: ``log(1 - D(G(z)))`` (the original game, Eq. 17; saturates early);
    * non-saturating: ``-log D(G(z))``;
    * wasserstein: ``-D(G(z))``;
    * least-squares: ``(D(G(z)) - 1)^2``.
    """
    if kind == "minimax":
        return -F.softplus(d_fake)
    if kind == "wasserstein":
        return -d_fake
    if kind == "least-squares":
        return (d_fake - 1).pow(2)
    return F.softplus(-d_fake)


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``(|grad_x D(x_hat)|_2 - 1)^2`` per sample (Gulrajani et al., 2017).

    ``x_hat = e * real + (1 - e) * fake`` with ``e ~ U(0, 1)`` per sample; the gradient norm
    is taken over *all* non-batch dimensions.

    Args:
        critic: maps ``(batch, *event)`` to ``(batch,)`` (or ``(batch, 1)``) values.
        real, fake: ``(batch, *event)``; ``fake`` is detached.
        generator: for the interpolation weights.

    Returns:
        ``(batch,)`` penalties (differentiable w.r.t. the critic's parameters).
    """
    e = torch.rand(real.shape[0], generator=generator, device=real.device, dtype=real.dtype)
    e = append_dims(e, real)
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al., 2018) on every linear / convolution layer."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear | nn.Conv2d):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            apply_spectral_norm(child)
    return module


class Discriminator(nn.Module):
    """``D(x[, y]) = head(phi(x)) [+ <embed(y), phi(x)>]`` (projection discriminator).

    ``phi`` is an MLP or a convolutional encoder (:func:`probpath.nn.conv.encoder_network`);
    with ``num_classes > 0`` the label enters by projection (Miyato & Koyama, 2018).
    ``bias=False`` drops the output offset, which a Wasserstein critic cannot learn (it
    cancels in ``E D(x) - E D(G(z))``).

    Shapes: ``(batch, *event_shape)`` (and labels ``(batch,)``) ``-> (batch,)``.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        num_classes: int = 0,
        architecture: str = "mlp",
        hidden: Sequence[int] = (128, 128),
        channels: Sequence[int] = (32, 64),
        features: int = 128,
        act: str = "silu",
        spectral_norm: bool = False,
        bias: bool = True,
    ):
        super().__init__()
        self.features = nn.Sequential(
            encoder_network(event_shape, features, architecture, hidden, channels, act),
            activation(act),
        )
        self.head = nn.Linear(features, 1, bias=bias)
        self.embed = nn.Embedding(num_classes, features) if num_classes > 0 else None
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out = self.head(h).squeeze(-1)
        if self.embed is not None:
            out = out + (self.embed(cond) * h).sum(-1)
        return out


class GAN(Model):
    """Generative adversarial network (Goodfellow et al., 2014; survey §1.3).

    Args:
        event_shape: shape of one sample.
        latent_dim: dimension of the generator's input noise ``z``.
        hidden: MLP widths of generator and discriminator.
        architecture: ``"mlp"`` or ``"conv"`` (DCGAN-like, images).
        channels: convolution widths (conv only).
        loss: ``"non-saturating"`` (default), ``"minimax"`` (Eq. 17 as written),
            ``"wasserstein"`` or ``"least-squares"``.
        gp_weight: weight of the gradient penalty (0: none; WGAN-GP uses 10).
        spectral_norm: spectral normalisation of the discriminator.
        d_steps: discriminator updates per generator update (fresh noise, same data batch).
        g_lr_scale, d_lr_scale: per-network learning-rate multipliers (two-time-scale update
            rule, Heusel et al., 2017).
        betas: Adam betas of both optimizers.
        tanh_output: squash generator outputs to ``(-1, 1)`` (for images scaled to it).
        act: activation name.
        _num_classes: internal, set by :class:`ConditionalGAN`.

    ``loss(x)`` is for monitoring only: the per-sample discriminator loss plus generator
    loss on fresh fakes, ``(batch,)`` (no gradient penalty). Training goes through
    :meth:`train_step`.
    """

    capabilities = Capabilities(route="adversarial", section="§1.3", one_step=True)

    def __init__(
        self,
        event_shape: Sequence[int],
        latent_dim: int = 16,
        hidden: Sequence[int] = (128, 128),
        architecture: str = "mlp",
        channels: Sequence[int] = (32, 64),
        loss: str = "non-saturating",
        gp_weight: float = 0.0,
        spectral_norm: bool = False,
        d_steps: int = 1,
        g_lr_scale: float = 1.0,
        d_lr_scale: float = 1.0,
        betas: Sequence[float] = (0.5, 0.999),
        tanh_output: bool = False,
        act: str = "silu",
        _num_classes: int = 0,
    ):
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.loss_kind = check_choice(loss, "loss", GAN_LOSSES)
        if gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight}")
        self.gp_weight = float(gp_weight)
        self.d_steps = check_positive_int(d_steps, "d_steps")
        if g_lr_scale <= 0 or d_lr_scale <= 0:
            raise ValueError("g_lr_scale and d_lr_scale must be positive")
        self.lr_scales = (float(g_lr_scale), float(d_lr_scale))
        self.betas = tuple(float(b) for b in betas)
        self.num_classes = int(_num_classes)
        g_in = self.latent_dim + self.num_classes
        generator = decoder_network(g_in, self.event_shape, architecture, hidden, channels, act)
        self.generator = nn.Sequential(generator, nn.Tanh()) if tanh_output else generator
        features = max(hidden, default=128) if architecture == "mlp" else 128
        self.discriminator = Discriminator(
            self.event_shape,
            self.num_classes,
            architecture,
            hidden,
            channels,
            features,
            act,
            spectral_norm,
            bias=self.loss_kind != "wasserstein",
        )

    # -- helpers ----------------------------------------------------------------------------
    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _check(self, x) -> torch.Tensor:
        x = check_tensor(x, "x", event_shape=self.event_shape)
        return x.to(device=self.device, dtype=self._dtype())

    def _check_cond(self, cond, n: int) -> torch.Tensor | None:
        if not self.num_classes:  # unconditional: labels are refused, not ignored
            return check_labels(cond, n, 0, type(self).__name__)
        if cond is None:
            raise ValueError(f"{type(self).__name__} needs class labels: pass cond of shape (n,)")
        cond = torch.as_tensor(cond, device=self.device).long().reshape(-1)
        if cond.shape[0] != n or cond.min() < 0 or cond.max() >= self.num_classes:
            raise ValueError(
                f"cond must hold {n} labels in [0, {self.num_classes}); got shape "
                f"{tuple(cond.shape)}"
            )
        return cond

    def generate(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``G(z[, y])``: ``(batch, latent_dim) -> (batch, *event_shape)``."""
        if self.num_classes:
            z = torch.cat([z, F.one_hot(cond, self.num_classes).to(z.dtype)], -1)
        return self.generator(z)

    def _noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(
            n, self.latent_dim, generator=generator, device=self.device, dtype=self._dtype()
        )

    def _critic(self, cond):
        return lambda x: self.discriminator(x, cond)

    def discriminator_objective(
        self, x: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-sample discriminator loss incl. the gradient penalty, ``(batch,)``."""
        d_loss = discriminator_loss(
            self.loss_kind, self.discriminator(x, cond), self.discriminator(fake, cond)
        )
        if self.gp_weight > 0:
            d_loss = d_loss + self.gp_weight * gradient_penalty(self._critic(cond), x, fake)
        return d_loss

    # -- the contract -----------------------------------------------------------------------
    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        """Two Adam optimizers with their own learning-rate scales (two-time-scale)."""
        g_scale, d_scale = self.lr_scales
        return {
            "generator": OptimizerGroup(list(self.generator.parameters()), g_scale, self.betas),
            "discriminator": OptimizerGroup(
                list(self.discriminator.parameters()), d_scale, self.betas
            ),
        }

    def train_step(self, x, cond, step: int, update) -> dict[str, float]:
        """``d_steps`` discriminator updates, then one generator update.

        ``update(loss, group)`` back-propagates a scalar and steps that group's optimizer.
        Returns the last discriminator and generator losses (``d_loss``, ``g_loss``).
        """
        x = self._check(x)
        cond = self._check_cond(cond, len(x))
        for _ in range(self.d_steps):
            self.zero_grad(set_to_none=True)
            with torch.no_grad():
                fake = self.generate(self._noise(len(x)), cond)
            d_loss = self.discriminator_objective(x, fake, cond).mean()
            update(d_loss, "discriminator")
        self.zero_grad(set_to_none=True)
        fake = self.generate(self._noise(len(x)), cond)
        g_loss = generator_loss(self.loss_kind, self.discriminator(fake, cond)).mean()
        update(g_loss, "generator")
        self.zero_grad(set_to_none=True)
        return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Monitoring value: discriminator loss + generator loss per sample, ``(batch,)``."""
        x = self._check(x)
        cond = self._check_cond(cond, len(x))
        d_fake = self.discriminator(self.generate(self._noise(len(x)), cond), cond)
        d_real = self.discriminator(x, cond)
        return discriminator_loss(self.loss_kind, d_real, d_fake) + generator_loss(
            self.loss_kind, d_fake
        )

    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One generator pass on ``z ~ N(0, I)``; ``(n, *event_shape)``.

        For a conditional GAN without ``cond`` the labels are drawn uniformly (with
        ``generator``).
        """
        n = check_positive_int(n, "n")
        z = self._noise(n, generator)
        if self.num_classes and cond is None:
            cond = torch.randint(0, self.num_classes, (n,), generator=generator, device=self.device)
        return self.generate(z, self._check_cond(cond, n))

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Not available: the density of a GAN is implicit (survey §4)."""
        raise NotImplementedError(IMPLICIT_DENSITY_MESSAGE.format(name=type(self).__name__))


class WGAN(GAN):
    """Wasserstein GAN with gradient penalty (WGAN-GP; Arjovsky et al., 2017; Gulrajani et
    al., 2017).

    The critic maximises ``E D(x) - E D(G(z))`` (a Wasserstein-1 estimate) with the penalty
    ``gp_weight * (|grad D(x_hat)| - 1)^2`` keeping it near 1-Lipschitz. Defaults follow the
    paper: ``gp_weight=10``, ``d_steps=5``, Adam betas ``(0, 0.9)``. Other arguments are
    :class:`GAN`'s.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        gp_weight: float = 10.0,
        d_steps: int = 5,
        betas: Sequence[float] = (0.0, 0.9),
        **kwargs,
    ):
        kwargs.setdefault("loss", "wasserstein")
        super().__init__(event_shape, gp_weight=gp_weight, d_steps=d_steps, betas=betas, **kwargs)


class ConditionalGAN(GAN):
    """Conditional GAN (Mirza & Osindero, 2014): the class label enters G and D.

    ``G(z, y)`` takes ``[z, one_hot(y)]``; the discriminator uses label projection. Other
    arguments are :class:`GAN`'s (any ``loss``, gradient penalty, spectral norm).
    """

    capabilities = Capabilities(
        route="adversarial", section="§1.3", one_step=True, conditional=True
    )

    def __init__(self, event_shape: Sequence[int], num_classes: int = 10, **kwargs):
        super().__init__(
            event_shape, _num_classes=check_positive_int(num_classes, "num_classes"), **kwargs
        )
