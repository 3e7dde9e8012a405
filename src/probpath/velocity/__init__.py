"""Route 3 (survey §3.3): conditional flow matching, couplings, rectified flow with reflow,
stochastic interpolants (SiT)."""

from probpath.velocity.couplings import (
    COUPLINGS,
    get_coupling,
    independent_coupling,
    ot_coupling,
    ot_plan,
)
from probpath.velocity.flow_matching import FlowMatching, RectifiedFlow
from probpath.velocity.interpolants import (
    DIFFUSIONS,
    INTERPOLANTS,
    StochasticInterpolant,
    diffusion_coefficient,
    sample_interpolant_sde,
)
from probpath.velocity.objectives import cfm_loss

__all__ = [
    "COUPLINGS",
    "DIFFUSIONS",
    "INTERPOLANTS",
    "FlowMatching",
    "RectifiedFlow",
    "StochasticInterpolant",
    "cfm_loss",
    "diffusion_coefficient",
    "get_coupling",
    "independent_coupling",
    "ot_coupling",
    "ot_plan",
    "sample_interpolant_sde",
]
