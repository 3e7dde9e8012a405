"""probpath: probabilistic modeling of data, from Gaussian MLE to flow matching, in one API.

The public names are imported on first use (PEP 562), so that ``probpath --help`` and
``probpath info`` start without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "Capabilities": "probpath.core",
    "CheckpointError": "probpath.core",
    "Dataset": "probpath.data",
    "Estimator": "probpath.core",
    "GenerativeModel": "probpath.core",
    "Model": "probpath.core",
    "build_model": "probpath.catalog",
    "load": "probpath.io",
    "load_dataset": "probpath.data",
}

__all__ = [*_PUBLIC, "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from probpath.catalog import build_model  # noqa: F401
    from probpath.core import (  # noqa: F401
        Capabilities,
        CheckpointError,
        Estimator,
        GenerativeModel,
        Model,
    )
    from probpath.data import Dataset, load_dataset  # noqa: F401
    from probpath.io import load  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'probpath' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
