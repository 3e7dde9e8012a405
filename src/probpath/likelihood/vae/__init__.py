"""The VAE family (survey §1.2, Eq. 15–16): VAE, beta-VAE, hierarchical VAE, VQ-VAE, and the
VAE with a planar / radial flow posterior (§3.1, Eq. 54)."""

from probpath.likelihood.vae.common import ObservationModel
from probpath.likelihood.vae.flow_vae import FlowVAE
from probpath.likelihood.vae.hvae import HierarchicalVAE
from probpath.likelihood.vae.vae import (
    VAE,
    BetaVAE,
    VAEBase,
    latent_interpolation,
    latent_traversal,
)
from probpath.likelihood.vae.vqvae import VQVAE, CodePrior, VectorQuantizer

__all__ = [
    "BetaVAE",
    "CodePrior",
    "FlowVAE",
    "HierarchicalVAE",
    "ObservationModel",
    "VAE",
    "VAEBase",
    "VQVAE",
    "VectorQuantizer",
    "latent_interpolation",
    "latent_traversal",
]
