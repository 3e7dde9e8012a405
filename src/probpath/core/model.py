"""The model contract: ``GenerativeModel`` protocol, ``Capabilities``, and two base classes.

Every model in probpath — a scikit-learn-style estimator fitted by EM or a neural network
trained by the :class:`~probpath.training.Trainer` — answers the same three questions:

* ``loss(x, cond=None) -> Tensor (batch,)``: the per-sample training objective;
* ``sample(n, cond=None, generator=None, **options) -> Tensor (n, *event_shape)``;
* ``log_prob(x, cond=None) -> Tensor (batch,)``: exact, a documented lower bound, or a
  ``NotImplementedError`` that says why (implicit models, survey §4).

A class-level :class:`Capabilities` says which route of the survey the model follows and
what it can do, so that ``compare`` can label its columns honestly.

Configuration is the constructor's keyword arguments: both base classes record them
(``model.config``) so that ``model.save(dir)`` writes them as JSON next to the weights
(safetensors) and :func:`probpath.load` rebuilds the model.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from probpath.core.serialization import (
    CheckpointError,
    atomic_write_json,
    check_state_dict,
    save_tensors,
)

__all__ = [
    "Capabilities",
    "GenerativeModel",
    "ConfigMixin",
    "Model",
    "Estimator",
    "OptimizerGroup",
    "FORMAT_VERSION",
]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Capabilities:
    """What a model family is and can do (class-level, read by ``compare`` and the CLI).

    Attributes:
        route: "likelihood", "score", "velocity" or "adversarial" (the survey's routes;
            classical estimators are "likelihood").
        section: the survey section, e.g. "§1.1.2".
        exact_log_prob: ``log_prob`` is the exact log-density.
        log_prob_bound: ``log_prob`` is a lower bound (ELBO / IWAE) — documented as such.
        has_score: the model exposes ``score(x)`` (or a score at every noise level).
        one_step: sampling takes a single network evaluation.
        conditional: ``loss`` / ``sample`` accept class labels ``cond``.
        estimator: fitted with ``fit(x)`` (scikit-learn style) instead of the Trainer.
    """

    route: str
    section: str
    exact_log_prob: bool = False
    log_prob_bound: bool = False
    has_score: bool = False
    one_step: bool = False
    conditional: bool = False
    estimator: bool = False

    @property
    def likelihood_kind(self) -> str:
        """ "exact", "bound" or "none" — the label of the NLL column."""
        if self.exact_log_prob:
            return "exact"
        return "bound" if self.log_prob_bound else "none"


@runtime_checkable
class GenerativeModel(Protocol):
    """Structural type every probpath model satisfies."""

    capabilities: ClassVar[Capabilities]

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor: ...

    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> torch.Tensor: ...

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor: ...

    def save(self, directory: str | Path) -> Path: ...


def _jsonable(value: Any, where: str) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "value") and isinstance(value.value, str | int):  # Enum
        return value.value
    raise TypeError(
        f"constructor argument {where} = {value!r} cannot be saved as JSON; models take plain "
        "numbers, strings, lists and dicts as configuration"
    )


class ConfigMixin:
    """Record the outermost constructor call's arguments in ``self.config``.

    Subclasses need do nothing: ``__init_subclass__`` wraps each ``__init__`` so that the
    bound, default-filled arguments of the first (outermost) call are stored.
    """

    config: dict[str, Any]
    #: The catalog entry the model was built from (``build_model`` sets it; saved in
    #: ``config.json`` as ``"catalog"`` so ``probpath.load`` finds the same entry).
    catalog_name: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        sig = inspect.signature(init)

        @functools.wraps(init)
        def wrapped(self, *args, **kw):
            if "_config_owner" not in self.__dict__:
                bound = sig.bind(self, *args, **kw)
                bound.apply_defaults()
                cfg: dict[str, Any] = {}
                for name, param in sig.parameters.items():
                    if name == "self":
                        continue
                    if param.kind is inspect.Parameter.VAR_KEYWORD:
                        cfg.update(bound.arguments.get(name, {}))
                    elif param.kind is not inspect.Parameter.VAR_POSITIONAL:
                        cfg[name] = bound.arguments[name]
                object.__setattr__(self, "_config_owner", type(self))
                object.__setattr__(self, "config", cfg)
            init(self, *args, **kw)

        cls.__init__ = wrapped

    def _write_config(self, directory: Path, state: dict | None = None) -> None:
        meta = {
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "config": {
                k: _jsonable(v, f"{type(self).__name__}.{k}") for k, v in self.config.items()
            },
        }
        if self.catalog_name is not None:
            meta["catalog"] = self.catalog_name
        if state:
            meta["state"] = _jsonable(state, "state")
        atomic_write_json(directory / "config.json", meta)


@dataclass
class OptimizerGroup:
    """Parameters trained by one optimizer, for models with several (GANs).

    ``lr_scale`` multiplies the Trainer's learning rate (two-time-scale updates);
    ``betas`` overrides Adam's betas when given.
    """

    params: list[nn.Parameter]
    lr_scale: float = 1.0
    betas: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Model(ConfigMixin, nn.Module):
    """Base class of neural generative models trained with the Trainer.

    Subclasses set ``capabilities`` and implement ``loss``, ``sample`` and ``log_prob``.
    Models needing several optimizers override :meth:`optimizer_groups` and
    ``train_step(x, cond, step, update) -> dict[str, float]``, where
    ``update(loss, group)`` back-propagates a scalar ``loss`` and steps the optimizer of
    ``group`` (the Trainer handles AMP scaling, clipping and zeroing).
    """

    capabilities: ClassVar[Capabilities]

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        """One optimizer over all trainable parameters (override for GANs)."""
        return {"model": OptimizerGroup([p for p in self.parameters() if p.requires_grad])}

    @property
    def device(self) -> torch.device:
        """Device of the first parameter or buffer (CPU for a parameter-free model)."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define log_prob")

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` (constructor arguments) and ``model.safetensors``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_tensors(directory / "model.safetensors", self.state_dict())
        self._write_config(directory)
        return directory

    def load_weights(self, tensors: dict[str, torch.Tensor], source: str = "weights") -> None:
        """Load a state dict after checking keys and shapes (raises ``CheckpointError``)."""
        check_state_dict(tensors, self.state_dict(), source)
        self.load_state_dict(tensors)


class Estimator(ConfigMixin):
    """Base class of scikit-learn-style estimators (``fit(x) -> self``, state ends in ``_``).

    ``save`` stores every learned attribute whose name ends in ``_``: tensors in
    ``model.safetensors``, plain values (floats, ints, bools, lists) in ``config.json``.
    """

    capabilities: ClassVar[Capabilities]

    def fitted_state(self) -> dict[str, Any]:
        """Learned attributes (names ending in ``_``)."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def check_is_fitted(self) -> None:
        """Raise a helpful error before ``fit`` has been called."""
        if not self.fitted_state():
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call .fit(x) first")

    def save(self, directory: str | Path) -> Path:
        self.check_is_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self.fitted_state()
        tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        plain = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
        save_tensors(directory / "model.safetensors", tensors)
        self._write_config(directory, state=plain)
        return directory

    def load_fitted(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore learned attributes saved by :meth:`save`."""
        for k, v in {**state, **tensors}.items():
            if not k.endswith("_"):
                raise CheckpointError(f"unexpected saved attribute {k!r} for {type(self).__name__}")
            setattr(self, k, v)
