"""Resource bounds checked before memory is spent: parameter counts, steps, sample sizes.

A configuration is a few bytes of JSON, but ``{"hidden": [1000000000]}`` asks for gigabytes.
:func:`build_bounded` builds a model while counting every tensor its constructor creates
through torch's factory functions (``empty``, ``zeros``, ``randn``, ``linspace``, ...): each
call's size is computed from its arguments (or, for rarer factories, by evaluating it on the
``meta`` device: shape only, no memory) before it runs, and the build stops
with :class:`ResourceLimitError` as soon as the running total would pass ``max_params``,
before the allocation that would pass it.

``DEFAULT_MAX_PARAMS`` (100 M elements: 400 MB in float32) is far above every probpath model
(the largest, the image UNet, has < 2 M); the CLI's ``--max-params`` raises it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = [
    "DEFAULT_MAX_PARAMS",
    "MAX_SAMPLER_STEPS",
    "ResourceLimitError",
    "build_bounded",
    "check_count",
    "check_elements",
]

DEFAULT_MAX_PARAMS = 100_000_000
"""Largest number of tensor elements a configuration may ask for (weights and buffers)."""

MAX_SAMPLER_STEPS = 100_000
"""Largest ``steps`` of a sampler (probpath's samplers use at most 1000 by default)."""


class ResourceLimitError(ValueError):
    """A configuration or option asks for more memory or steps than the set bound."""


def check_count(value: int, limit: int, what: str, fix: str) -> int:
    """Return ``value`` if ``0 <= value <= limit``, else raise naming ``what`` and ``fix``."""
    if not 0 <= value <= limit:
        raise ResourceLimitError(f"{what} is {value}, above the bound of {limit}; {fix}")
    return value


def check_elements(shape: Sequence[int], limit: int, what: str, fix: str) -> int:
    """Number of elements of ``shape`` (each dimension >= 0), bounded by ``limit``."""
    dims = [int(s) for s in shape]
    if any(s < 0 for s in dims):
        raise ResourceLimitError(f"{what} has a negative dimension {tuple(dims)}")
    return check_count(math.prod(dims), limit, f"{what} {tuple(dims)}", fix)


def _shape_numel(args: tuple, kwargs: dict) -> int | None:
    """Elements of a ``size`` given as ``f(2, 3)``, ``f((2, 3))`` or ``f(size=(2, 3))``."""
    size = kwargs.get("size", args[0] if len(args) == 1 else args)
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size,)
    if isinstance(size, tuple | list | torch.Size) and all(
        isinstance(s, int) and not isinstance(s, bool) for s in size
    ):
        return math.prod(size)
    return None


def _numel(name: str, args: tuple, kwargs: dict) -> int | None:
    """Elements a factory call will create, from its arguments (``None``: not known here).

    Computed without torch for the common factories (a meta-device probe of ``arange`` loads
    torch's symbolic-shape machinery: ~75 MiB and seconds, on every load).
    """
    if name in ("empty", "zeros", "ones", "rand", "randn"):
        return _shape_numel(args, kwargs)
    if name == "full":
        return _shape_numel((kwargs["size"],) if "size" in kwargs else args[:1], {})
    if name in ("tensor", "as_tensor", "asarray", "scalar_tensor"):
        return 0  # built from data that is already in memory
    if name in ("linspace", "logspace"):
        steps = kwargs.get("steps", args[2] if len(args) > 2 else None)
        return steps if isinstance(steps, int) and not isinstance(steps, bool) else None
    if name == "arange" and 1 <= len(args) <= 3 and all(isinstance(a, int | float) for a in args):
        start, end = (0, args[0]) if len(args) == 1 else args[:2]
        step = args[2] if len(args) == 3 else 1
        try:
            return max(0, math.ceil((end - start) / step))
        except (ArithmeticError, ValueError):  # step 0, infinities, NaN: let torch decide
            return None
    return None


def _constructors() -> set[Callable]:
    from torch.utils._device import _device_constructors

    return _device_constructors()


class _Budget(TorchFunctionMode):
    """Count elements created by torch factory functions; refuse past ``limit``."""

    def __init__(self, limit: int, what: str):
        super().__init__()
        self.limit, self.what, self.used = limit, what, 0
        self.factories = _constructors()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.factories:
            n = _numel(func.__name__, args, kwargs)
            if n is None:
                probe = func(*args, **{**kwargs, "device": "meta"})
                n = probe.numel() if isinstance(probe, torch.Tensor) else 0
            self.used += n
            if self.used > self.limit:
                raise ResourceLimitError(
                    f"{self.what} asks for more than {self.limit} tensor elements (weights, "
                    "buffers and their set-up); use smaller sizes, or raise the bound "
                    "(--max-params) if you trust this configuration"
                )
        return func(*args, **kwargs)


def build_bounded(factory: Callable[[], Any], max_params: int, what: str) -> Any:
    """Run ``factory()`` (a model constructor) with its tensor allocations bounded.

    Args:
        factory: builds and returns the model.
        max_params: largest total number of elements the constructor may create.
        what: names the model in the error, e.g. ``"model 'ddpm' (config.json)"``.

    Raises:
        ResourceLimitError: the construction would pass ``max_params`` elements; raised
            before the allocation that would pass it.
    """
    with _Budget(int(max_params), what):
        return factory()
