"""Route 3 (survey §3.3): conditional flow matching, couplings, rectified flow with reflow."""

from probpath.velocity.couplings import (
    COUPLINGS,
    get_coupling,
    independent_coupling,
    ot_coupling,
    ot_plan,
)
from probpath.velocity.flow_matching import FlowMatching, RectifiedFlow
from probpath.velocity.objectives import cfm_loss

__all__ = [
    "COUPLINGS",
    "FlowMatching",
    "RectifiedFlow",
    "cfm_loss",
    "get_coupling",
    "independent_coupling",
    "ot_coupling",
    "ot_plan",
]
