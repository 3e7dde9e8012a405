"""Start-up: ``probpath --help`` and ``probpath info`` import no torch; info's text is current."""

from __future__ import annotations

import subprocess
import sys

import pytest

from probpath.cli.info import live_text
from probpath.cli.info_text import INFO_TEXT

_PROBE = """
import runpy, sys
sys.argv = ["probpath", *sys.argv[1:]]
try:
    runpy.run_module("probpath", run_name="__main__")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
heavy = sorted(m for m in ("torch", "numpy", "scipy", "matplotlib") if m in sys.modules)
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
"""


@pytest.mark.parametrize("args", [["--help"], ["info"], ["fit", "--help"]])
def test_cli_start_up_imports_no_torch(args):
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY=\n" in out.stderr, out.stderr[-500:]
    assert out.stdout.strip()


def test_static_info_text_matches_the_catalog():
    """``probpath info`` prints static text; it must be what the registries say now."""
    assert INFO_TEXT == live_text(), (
        "the catalog or a registry changed: run `python -m probpath.cli.info` to rewrite "
        "src/probpath/cli/info_text.py"
    )
