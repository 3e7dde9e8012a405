"""The one explicit catalog of model names (used by the CLI, ``compare`` and ``load``).

The library never looks classes up by string anywhere else. Each entry names a class, the
keyword arguments that make the entry (e.g. ``ot-cfm`` is ``FlowMatching(coupling="ot")``),
a faster configuration for ``compare --quick``, and a tiny one for the contract battery.
Adding a model is one ``CatalogEntry`` line below; it then appears in ``probpath info``,
``compare`` and ``tests/contract`` automatically.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CatalogEntry", "CATALOG", "get_entry", "entry_for_class", "build_model", "model_names"]


@dataclass(frozen=True)
class CatalogEntry:
    """One model name.

    Attributes:
        name: the CLI name (``probpath fit NAME``).
        cls: the model class.
        summary: one line for ``probpath info``.
        kwargs: constructor arguments that define this entry.
        quick_kwargs: overrides used by ``compare --quick`` (small and fast).
        test_kwargs: overrides for the contract battery (tiny, seconds on a CPU).
        data: which data the model takes: "vector", "image" or "any".
        in_compare: whether ``compare`` runs it by default.
    """

    name: str
    cls: type
    summary: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    quick_kwargs: dict[str, Any] = field(default_factory=dict)
    test_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "any"
    in_compare: bool = True

    def accepts(self, event_shape: tuple[int, ...]) -> bool:
        """Whether this model can be fitted to data of ``event_shape``."""
        if self.data == "vector":
            return len(event_shape) == 1
        if self.data == "image":
            return len(event_shape) == 3
        return True


def _entries() -> list[CatalogEntry]:
    # Imports live here so that `import probpath.catalog` stays cheap and the routes never
    # import the catalog (dependency direction: the catalog sits on top).
    entries: list[CatalogEntry] = []
    # --- classical route (survey §1.1) ---
    # --- deep likelihood / adversarial routes (§1.2, §1.3, §3.1, §3.2) ---
    # --- probability-path routes (§2, §3.3) ---
    return entries


_CATALOG: list[CatalogEntry] | None = None


def _catalog() -> list[CatalogEntry]:
    global _CATALOG
    if _CATALOG is None:
        _CATALOG = _entries()
        names = [e.name for e in _CATALOG]
        if len(set(names)) != len(names):
            raise RuntimeError(f"duplicate catalog names: {names}")
    return _CATALOG


class _CatalogView:
    """Read-only, lazily built view of the entries (iterable, indexable by name)."""

    def __iter__(self):
        return iter(_catalog())

    def __len__(self) -> int:
        return len(_catalog())

    def __getitem__(self, name: str) -> CatalogEntry:
        return get_entry(name)

    def __contains__(self, name: object) -> bool:
        return any(e.name == name for e in _catalog())


CATALOG = _CatalogView()


def model_names() -> list[str]:
    """All catalog names, in catalog order."""
    return [e.name for e in _catalog()]


def get_entry(name: str) -> CatalogEntry:
    """The entry called ``name``; the error lists the valid names."""
    for e in _catalog():
        if e.name == name:
            return e
    raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")


def entry_for_class(class_name: str) -> CatalogEntry:
    """The first entry whose class is called ``class_name`` (used by :func:`probpath.load`)."""
    for e in _catalog():
        if e.cls.__name__ == class_name:
            return e
    raise ValueError(
        f"no catalog model has class {class_name!r}; the file was written by another probpath "
        "version or is not a probpath model"
    )


def build_model(
    entry: CatalogEntry | str,
    event_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    *,
    quick: bool = False,
    test: bool = False,
    **overrides: Any,
):
    """Construct ``entry``'s model for data of ``event_shape`` (and ``num_classes`` labels).

    ``event_shape`` / ``num_classes`` are passed only to constructors that take them.
    Later keyword sources win: entry kwargs < quick/test kwargs < ``overrides``.
    """
    if isinstance(entry, str):
        entry = get_entry(entry)
    kwargs = dict(entry.kwargs)
    if quick:
        kwargs.update(entry.quick_kwargs)
    if test:
        kwargs.update(entry.test_kwargs)
    kwargs.update(overrides)
    params = inspect.signature(entry.cls.__init__).parameters
    if "event_shape" in params and event_shape is not None:
        kwargs.setdefault("event_shape", tuple(event_shape))
    if "num_classes" in params and num_classes is not None:
        kwargs.setdefault("num_classes", num_classes)
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise ValueError(
            f"model {entry.name!r} has no option(s) {unknown}; its options are "
            f"{[p for p in params if p != 'self']}"
        )
    return entry.cls(**kwargs)
