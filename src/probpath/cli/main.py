"""The ``probpath`` command: ``info``, ``fit``, ``sample``, ``evaluate``, ``restore``,
``compare``, ``survey``.

One module per command (:mod:`probpath.cli.fit`, ...), the shared option checks in
:mod:`probpath.cli.options`, and one error boundary in :mod:`probpath.cli.errors`: bad input
ends with exit code 2 and one line on stderr that says what to do, an internal error with
exit code 1 and one line (``PROBPATH_DEBUG=1`` shows the traceback). Every command checks all
of its input before it trains or writes anything. Nothing here imports torch at start-up:
``probpath --help`` and ``probpath info`` stay fast.
"""

from __future__ import annotations

import sys

from probpath.cli import (  # noqa: F401 - each module registers its command
    compare,
    evaluate,
    fit,
    info,
    restore,
    sample,
    survey,
)
from probpath.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``probpath`` script and ``python -m probpath``."""
    app(prog_name="probpath")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
