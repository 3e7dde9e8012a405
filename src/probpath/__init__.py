"""probpath: probabilistic modeling of data, from Gaussian MLE to flow matching, in one API."""

from probpath.catalog import build_model
from probpath.core import Capabilities, CheckpointError, Estimator, GenerativeModel, Model
from probpath.data import Dataset, load_dataset
from probpath.io import load

__version__ = "0.1.0"

__all__ = [
    "Capabilities",
    "CheckpointError",
    "Dataset",
    "Estimator",
    "GenerativeModel",
    "Model",
    "build_model",
    "load",
    "load_dataset",
    "__version__",
]
