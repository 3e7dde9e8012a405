"""probpath: probabilistic modeling of data, from Gaussian MLE to flow matching, in one API."""

from probpath.core import Capabilities, CheckpointError, Estimator, GenerativeModel, Model
from probpath.data.dataset import Dataset
from probpath.io import load

__version__ = "0.1.0"

__all__ = [
    "Capabilities",
    "CheckpointError",
    "Dataset",
    "Estimator",
    "GenerativeModel",
    "Model",
    "load",
    "__version__",
]
