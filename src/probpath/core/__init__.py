"""The model contract, validation helpers, broadcasting and safe serialization."""

from probpath.core.broadcast import append_dims, expand_t
from probpath.core.model import (
    Capabilities,
    ConfigMixin,
    Estimator,
    GenerativeModel,
    Model,
    OptimizerGroup,
    is_conditional,
)
from probpath.core.serialization import CheckpointError

__all__ = [
    "Capabilities",
    "CheckpointError",
    "ConfigMixin",
    "Estimator",
    "GenerativeModel",
    "Model",
    "OptimizerGroup",
    "append_dims",
    "expand_t",
    "is_conditional",
]
