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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted
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
    "draw",
    "OptimizerGroup",
    "FORMAT_VERSION",
    "is_conditional",
    "check_labels",
    "num_parameters",
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
        conditional: always conditional: ``loss`` / ``sample`` take class labels ``cond`` and
            training needs a labelled data set (the conditional GAN).
        accepts_labels: built with ``num_classes > 0`` the model learns ``p(x | c)`` (a label
            embedding with a "no label" index for classifier-free guidance); with
            ``num_classes = 0`` it is unconditional. :func:`is_conditional` reads both.
        estimator: fitted with ``fit(x)`` (scikit-learn style) instead of the Trainer.
    """

    route: str
    section: str
    exact_log_prob: bool = False
    log_prob_bound: bool = False
    has_score: bool = False
    one_step: bool = False
    conditional: bool = False
    accepts_labels: bool = False
    estimator: bool = False

    @property
    def likelihood_kind(self) -> str:
        """ "exact", "bound" or "none" — the label of the NLL column."""
        if self.exact_log_prob:
            return "exact"
        return "bound" if self.log_prob_bound else "none"


def is_conditional(model: Any) -> bool:
    """Whether this model *instance* learns ``p(x | c)``: labels reach ``loss`` and ``sample``.

    True for always-conditional families (``capabilities.conditional``) and for families that
    accept labels (``capabilities.accepts_labels``) built with ``num_classes > 0``. The Trainer,
    ``compare`` and the CLI pass ``Dataset.y`` exactly when this is true.
    """
    caps = getattr(model, "capabilities", None)
    if caps is None:
        return False
    if caps.conditional:
        return True
    return bool(caps.accepts_labels) and int(getattr(model, "num_classes", 0) or 0) > 0


def check_labels(
    cond: Any, n: int, num_classes: int, owner: str, *, null: bool = False, device=None
) -> torch.Tensor | None:
    """Validate class labels for a model with ``num_classes`` labels: ``(n,)`` integers (or
    one label for all) in ``0..num_classes - 1`` (``num_classes`` itself too when ``null``:
    the "no label" index). Returns a long tensor on ``device`` (``None`` passes through).

    Raises ``ValueError`` naming the fix, e.g. for labels given to an unconditional model.
    """
    if cond is None:
        return None
    if not num_classes:
        raise ValueError(
            f"{owner} was built without labels (num_classes=0), so it cannot use cond; pass "
            "cond=None, or build it with num_classes=K and train it on labelled data"
        )
    cond = torch.as_tensor(cond, device=device)
    if cond.ndim == 0:
        cond = cond.expand(n)
    if cond.shape != (n,) or cond.is_floating_point() or cond.dtype == torch.bool:
        raise ValueError(
            f"cond must be integer labels of shape ({n},) (one per sample) or one label; "
            f"got {cond.dtype} of shape {tuple(cond.shape)}"
        )
    top = num_classes if null else num_classes - 1
    if n and (int(cond.min()) < 0 or int(cond.max()) > top):
        extra = f" (or {num_classes} for 'no label')" if null else ""
        raise ValueError(
            f"cond labels must lie in 0..{num_classes - 1}{extra}; got "
            f"{int(cond.min())}..{int(cond.max())}"
        )
    return cond.long()


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
    #: Network evaluations per sample of the default (or last) ``sample`` call; ``None``
    #: until known. Samplers set it; a property where it is fixed (VAE, flows).
    sampling_nfe: int | None = None
    #: ``sampling_nfe`` as the survey prints it ("N×2" for classifier-free guidance: two
    #: network passes per evaluation); ``None`` where it is just the number.
    sampling_nfe_text: str | None = None
    #: Share of the Trainer's budget used before the current step (``step / steps`` or seconds
    #: / ``time_budget``, the larger when both bound training), set by the Trainer before each
    #: step; ``None`` outside a Trainer. Models trained in stages (latent diffusion) read it.
    budget_used: float | None = None

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


class Estimator(ConfigMixin, DensityMixin, BaseEstimator):
    """Base class of the classical estimators: real scikit-learn estimators.

    **Two sampling interfaces, one rule.** An estimator follows scikit-learn exactly:
    ``get_params`` / ``set_params`` / ``clone``, validation in ``fit``, learned state ending
    in ``_``, :class:`~sklearn.exceptions.NotFittedError`, and ``sample(n_samples) -> (X, y)``
    (arrays in the format it was fitted on). probpath's generative ``Model`` interface
    (``sample(n, cond, generator) -> Tensor``) is reached for *every* model, estimator or
    network, through :func:`draw`, which calls :meth:`generate` here; the CLI, ``compare``,
    the trainer and the contract battery use :func:`draw`.

    **Arrays.** NumPy in, NumPy out (float32 stays float32); torch in, torch out on the
    input's device. Fitted arrays take the format of the data given to ``fit``; inside
    the methods they are handled as torch tensors (:meth:`_torch_state`).

    ``save`` stores every learned attribute whose name ends in ``_``: arrays in
    ``model.safetensors``, plain values (floats, ints, bools, lists) in ``config.json``;
    the configuration is ``get_params()``. A loaded estimator holds torch tensors.
    """

    capabilities: ClassVar[Capabilities]

    def __init_subclass__(cls, **kwargs):
        # scikit-learn's get_params is the configuration: skip ConfigMixin's __init__ wrapper
        super(ConfigMixin, cls).__init_subclass__(**kwargs)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (``get_params(deep=False)``) as plain JSON values."""
        return {k: _plain(v) for k, v in self.get_params(deep=False).items()}

    def fitted_state(self) -> dict[str, Any]:
        """Learned attributes (names ending in ``_``)."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def check_is_fitted(self) -> None:
        """Raise scikit-learn's ``NotFittedError`` (a ``ValueError``) before ``fit``."""
        check_is_fitted(self)

    def generate(
        self, n: int, cond: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """probpath's generative ``sample``: ``n`` draws, a tensor ``(n, d)`` (see :func:`draw`)."""
        raise NotImplementedError(f"{type(self).__name__} does not define generate()")

    @contextmanager
    def _torch_state(self, keep: bool = False):
        """Within the block, fitted NumPy arrays are torch tensors on the compute device.

        With ``keep=False`` (read-only methods) the instance dictionary is restored exactly
        afterwards; with ``keep=True`` (``fit``) the fitted arrays are converted back to the
        format of the fitted data.
        """
        saved = dict(vars(self))
        device = torch.device(getattr(self, "_device", "cpu"))
        for k, v in saved.items():
            if k.endswith("_") and not k.startswith("_") and isinstance(v, np.ndarray):
                if v.dtype.kind == "f":
                    setattr(self, k, torch.from_numpy(np.ascontiguousarray(v)).to(device))
        self._refresh()
        try:
            yield
        finally:
            if keep:
                self._export_state()
            else:
                vars(self).clear()
                vars(self).update(saved)

    def _refresh(self) -> None:
        """Recompute caches derived from the fitted attributes (override)."""

    def _export_state(self) -> None:
        """Convert fitted tensors to NumPy when the estimator was fitted on NumPy data."""
        if getattr(self, "_numpy_io", False):
            for k, v in self.fitted_state().items():
                if isinstance(v, torch.Tensor):
                    setattr(self, k, v.detach().cpu().numpy())

    def save(self, directory: str | Path) -> Path:
        self.check_is_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # labels_ (scikit-learn's per-training-sample cluster labels) describes the training
        # set, not the model: not saved, so a saved model's size does not grow with the data
        state = {k: v for k, v in self.fitted_state().items() if k != "labels_"}
        tensors = {
            k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v
            for k, v in state.items()
            if isinstance(v, torch.Tensor | np.ndarray)
        }
        plain = {k: v for k, v in state.items() if k not in tensors}
        save_tensors(directory / "model.safetensors", tensors)
        self._write_config(directory, state=plain)
        return directory

    def load_fitted(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore learned attributes saved by :meth:`save`.

        Every name must be a learned attribute (``name_``, not private, not defined by the
        class: no method or property is replaced) and every tensor real floating point.
        """
        for k, v in {**state, **tensors}.items():
            if (
                not isinstance(k, str)
                or not k.endswith("_")
                or k.startswith("_")
                or hasattr(type(self), k)
            ):
                raise CheckpointError(f"unexpected saved attribute {k!r} for {type(self).__name__}")
            if isinstance(v, torch.Tensor) and not v.is_floating_point():
                raise CheckpointError(
                    f"saved attribute {k!r} of {type(self).__name__} has dtype {v.dtype}; "
                    "fitted tensors are real floating point"
                )
        for k, v in {**state, **tensors}.items():
            setattr(self, k, v)


def _plain(value: Any) -> Any:
    """Arrays and tensors become nested lists, so that a configuration is plain JSON."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.dtype | torch.device):
        return str(value).removeprefix("torch.")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def draw(
    model: Any,
    n: int,
    *,
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> torch.Tensor:
    """probpath's generative sampling for any model: a tensor ``(n, *event_shape)``.

    Networks (:class:`Model`) answer ``model.sample(n, cond, generator, **options)``;
    estimators keep scikit-learn's ``sample(n_samples) -> (X, y)`` and answer
    :meth:`Estimator.generate` here. This is the one place that tells the two apart.
    """
    if isinstance(model, Estimator):
        return model.generate(n, cond=cond, generator=generator)
    return model.sample(n, cond=cond, generator=generator, **options)


def num_parameters(model: Any, trainable_only: bool = False) -> int:
    """Number of learned values of any model (the tables' "Params" column).

    A network (``torch.nn.Module``): the elements of its parameters (only those with
    ``requires_grad`` when ``trainable_only``); an :class:`Estimator`: the elements of its
    fitted arrays (``mean_``, ``covariances_``, ...; 0 before ``fit``).

    >>> num_parameters(torch.nn.Linear(3, 2))
    8
    """
    if isinstance(model, nn.Module):
        return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    if isinstance(model, Estimator):
        sizes = [
            v.numel() if isinstance(v, torch.Tensor) else v.size
            for v in model.fitted_state().values()
            if isinstance(v, torch.Tensor | np.ndarray)
        ]
        return int(sum(sizes))
    raise TypeError(f"num_parameters takes a network or an Estimator, got {type(model).__name__}")
