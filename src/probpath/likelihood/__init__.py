"""Route 1 of the survey, maximum likelihood: Gaussian MLE and score matching (§1.1.1), EM and
mixtures (§1.1.2-§1.1.4), variational inference (§1.1.5), VAEs (§1.2), discrete flows (§3.1)
and the continuous normalizing flow (§3.2)."""

from probpath.likelihood.cnf import CNF
from probpath.likelihood.em import EMEstimator
from probpath.likelihood.families import BernoulliMixture, PoissonMixture
from probpath.likelihood.flows import MAF, PlanarFlow, RadialFlow, RealNVP
from probpath.likelihood.gaussian import GaussianMLE, GaussianScoreMatching
from probpath.likelihood.mixture import GaussianMixture, MixtureEM
from probpath.likelihood.vae import VAE, VQVAE, BetaVAE, FlowVAE, HierarchicalVAE
from probpath.likelihood.variational import BayesianGaussianMixture, MeanFieldVI

__all__ = [
    "BayesianGaussianMixture",
    "BernoulliMixture",
    "BetaVAE",
    "CNF",
    "EMEstimator",
    "FlowVAE",
    "GaussianMLE",
    "GaussianMixture",
    "GaussianScoreMatching",
    "HierarchicalVAE",
    "MAF",
    "MeanFieldVI",
    "MixtureEM",
    "PlanarFlow",
    "PoissonMixture",
    "RadialFlow",
    "RealNVP",
    "VAE",
    "VQVAE",
]
