"""Every public module imports and its ``__all__`` names exist."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import probpath

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(probpath.__path__, prefix="probpath.")
    if not m.name.split(".")[-1].startswith("_") and not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_module_all(name):
    mod = importlib.import_module(name)
    names = getattr(mod, "__all__", None)
    if name.count(".") >= 1 and mod.__file__.endswith("__init__.py") and names is None:
        pytest.skip("package without re-exports")
    assert names is not None, f"{name} has no __all__"
    for n in names:
        assert hasattr(mod, n), f"{name}.__all__ lists missing name {n!r}"


def test_top_level_version():
    assert isinstance(probpath.__version__, str)
