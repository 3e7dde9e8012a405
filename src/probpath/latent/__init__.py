"""Latent models: a path model on the scaled latents of a KL-regularised autoencoder
(latent diffusion, Rombach et al. 2022). Sits above the routes: it composes the route-1
autoencoder (``likelihood.vae``) with a route-2/3 path model (``score`` / ``velocity``)."""

from probpath.latent.model import (
    LatentBound,
    LatentDiffusion,
    LatentFlowMatching,
    LatentModel,
    latent_priors,
)

__all__ = ["LatentBound", "LatentModel", "LatentDiffusion", "LatentFlowMatching", "latent_priors"]
