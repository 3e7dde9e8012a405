"""Discrete normalizing flows (survey §3.1): planar, radial, RealNVP coupling, MAF."""

from probpath.likelihood.flows.autoregressive import MADE, MAF, MaskedAffineAutoregressive
from probpath.likelihood.flows.base import FlowModel, Transform, standard_normal_log_prob
from probpath.likelihood.flows.coupling import ActNorm, AffineCoupling, Permutation, RealNVP
from probpath.likelihood.flows.planar import (
    PlanarFlow,
    PlanarTransform,
    RadialFlow,
    RadialTransform,
)

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "FlowModel",
    "MADE",
    "MAF",
    "MaskedAffineAutoregressive",
    "Permutation",
    "PlanarFlow",
    "PlanarTransform",
    "RadialFlow",
    "RadialTransform",
    "RealNVP",
    "Transform",
    "standard_normal_log_prob",
]
