"""Seeds in one place: the global random streams, the initial weights, and the record of the
environment a run used (so that "same command, same seed -> same files" can be checked).

``Trainer.fit`` calls :func:`seeded_init` before training, so ``TrainConfig(seed=s)`` fixes
the initial weights as well as the data order and the noise: a model built under any global
random state trains to byte-identical weights. Weights that came from a fit or from
``probpath.load`` are kept (:func:`mark_pretrained`), so continuing or fine-tuning still works.
"""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

__all__ = [
    "INIT_MODES",
    "environment",
    "is_pretrained",
    "mark_pretrained",
    "seed_everything",
    "seeded_init",
]

INIT_MODES = ("auto", "seed", "keep")
_PRETRAINED = "_probpath_pretrained"


def seed_everything(seed: int) -> None:
    """Seed torch's, NumPy's legacy global and Python's ``random`` streams with ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the legacy global stream models may use)
    random.seed(seed)


def mark_pretrained(model) -> None:
    """Record that ``model`` carries trained or loaded weights (``init="auto"`` keeps them)."""
    object.__setattr__(model, _PRETRAINED, True)


def is_pretrained(model) -> bool:
    """Whether :func:`mark_pretrained` was called on ``model``."""
    return bool(getattr(model, _PRETRAINED, False))


def seeded_init(model: torch.nn.Module, seed: int, mode: str = "auto") -> bool:
    """Give ``model`` the initial weights it would have had if built under ``manual_seed(seed)``.

    The model is rebuilt from its recorded constructor arguments (``model.config``, see
    ``ConfigMixin``) under a forked, seeded torch stream, and the fresh state is copied into
    ``model`` in place (parameters keep their identity, device and dtype). The global torch
    stream is left as it was.

    Args:
        model: a probpath ``Model``.
        seed: the run's seed.
        mode: ``"seed"`` (always), ``"keep"`` (never: custom or pre-trained weights),
            ``"auto"`` (unless :func:`is_pretrained`).

    Returns:
        Whether the weights were re-initialised.

    Raises:
        ValueError: an unknown ``mode``, or ``mode="seed"`` for a model that cannot be rebuilt
            from its ``config``.

    >>> from probpath.nn import MLP
    >>> from probpath.core import Capabilities, Model
    >>> class Tiny(Model):
    ...     capabilities = Capabilities(route="likelihood", section="§1.1")
    ...     def __init__(self, width=3):
    ...         super().__init__()
    ...         self.net = torch.nn.Linear(2, width)
    >>> a, b = Tiny(), Tiny()
    >>> seeded_init(a, 0) and seeded_init(b, 0)
    True
    >>> bool(torch.equal(a.net.weight, b.net.weight))
    True
    """
    if mode not in INIT_MODES:
        raise ValueError(f"init must be one of {INIT_MODES}, got {mode!r}")
    if mode == "keep" or (mode == "auto" and is_pretrained(model)):
        return False
    config = getattr(model, "config", None)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = type(model)(**config)
    except (TypeError, ValueError) as exc:
        if mode == "seed":
            raise ValueError(
                f"cannot rebuild {type(model).__name__} from its config to seed its weights "
                f"({exc}); pass init='keep' and seed the construction yourself"
            ) from None
        return False
    model.load_state_dict(fresh.state_dict())
    return True


def environment(device: str | torch.device | None = None) -> dict:
    """What a run's numbers depend on besides the seed: versions, device and threads."""
    from probpath import __version__

    env = {
        "probpath": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": None if device is None else str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env
