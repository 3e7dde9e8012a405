"""Each module of the run / compare / training layers imports on its own, first in a fresh
interpreter (a circular import shows only when a cycle's later module is imported first),
and the library's run-directory module imports nothing from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize(
    "module",
    [
        "probpath.runs",
        "probpath.cli.rundir",
        "probpath.compare.features",
        "probpath.compare.runmodel",
        "probpath.training.run_files",
    ],
)
def test_module_imports_first(module):
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.startswith('probpath.cli'))\n"
        f"print(bad if {module!r}.startswith('probpath.cli') else bad or 'none')"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    if not module.startswith("probpath.cli"):  # the library never pulls in the CLI
        assert out.stdout.strip() == "none", out.stdout
