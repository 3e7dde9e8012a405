"""Route 2 (survey §2): score-matching objectives and the DDPM, NCSN, score-SDE and EDM models."""

from probpath.score.diffusion import NCSN, DiffusionModel, ScoreSDE
from probpath.score.edm import EDM, edm_loss, edm_sigma, edm_weight
from probpath.score.objectives import (
    WEIGHTINGS,
    VLBTerms,
    ddpm_vlb,
    ddpm_vlb_loss,
    ddpm_vlb_terms,
    denoising_score_matching_loss,
    eps_weight,
    exact_score_matching_loss,
    gaussian_kl,
    ncsn_sigmas,
    posterior_coefficients,
    sliced_score_matching_loss,
    weighted_dsm_loss,
)

__all__ = [
    "EDM",
    "NCSN",
    "WEIGHTINGS",
    "DiffusionModel",
    "ScoreSDE",
    "VLBTerms",
    "ddpm_vlb",
    "ddpm_vlb_loss",
    "ddpm_vlb_terms",
    "denoising_score_matching_loss",
    "edm_loss",
    "edm_sigma",
    "edm_weight",
    "eps_weight",
    "exact_score_matching_loss",
    "gaussian_kl",
    "ncsn_sigmas",
    "posterior_coefficients",
    "sliced_score_matching_loss",
    "weighted_dsm_loss",
]
