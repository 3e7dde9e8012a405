"""The adversarial route (survey §1.3, Eq. 17): GAN, WGAN-GP, conditional GAN, CycleGAN.

These are implicit models: they sample but have no tractable density (survey §4).
"""

from probpath.adversarial.cyclegan import CycleGAN, domain_transform
from probpath.adversarial.gan import (
    GAN,
    WGAN,
    ConditionalGAN,
    Discriminator,
    apply_spectral_norm,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
)

__all__ = [
    "GAN",
    "WGAN",
    "ConditionalGAN",
    "CycleGAN",
    "Discriminator",
    "apply_spectral_norm",
    "discriminator_loss",
    "domain_transform",
    "generator_loss",
    "gradient_penalty",
]
