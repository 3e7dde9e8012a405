"""The command's one error boundary: every failure ends as one line on stderr.

Exit codes:

* ``0`` success;
* ``2`` a failure the user can fix — a bad option, unreadable or hostile input, a refused
  checkpoint, a size over a bound, an out-of-memory, an unsupported operation — reported as
  ``error: <what is wrong and what to do>``;
* ``1`` an internal error (a bug in probpath): ``error: internal error (<type>: <message>);
  set PROBPATH_DEBUG=1 for the traceback``;
* ``130`` interrupted (Ctrl-C).

Python warnings raised while a command runs are captured: after a success they are printed
as ``warning: ...`` lines; after a failure only the error line is printed (set
``PROBPATH_DEBUG=1`` to see them and the traceback).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["BadInput", "OneLineErrors", "describe", "debug_enabled"]


class BadInput(ValueError):
    """Input the user can fix (exit code 2)."""


def debug_enabled() -> bool:
    """Whether ``PROBPATH_DEBUG`` asks for tracebacks instead of one-line errors."""
    return os.environ.get("PROBPATH_DEBUG", "") not in ("", "0")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _message(exc: BaseException) -> str:
    """The exception's own message, or its type's name when it has none."""
    text = _one_line(str(exc))
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = _one_line(repr(exc.args[0]))
    return text or type(exc).__name__


# Expected failure classes -> how to phrase them (most specific first; isinstance order).
_EXPECTED: tuple[tuple[type[BaseException], str], ...] = (
    (BadInput, "{msg}"),
    (RecursionError, "input is nested too deeply ({msg}); flatten the JSON (config.json, "
     "run.json or --set values)"),
    (MemoryError, "out of memory ({msg}); use a smaller model, --n, --batch-size or --steps"),
    (OverflowError, "a number is too large ({msg}); use a smaller value"),
    (NotImplementedError, "{msg}"),
    (KeyError, "unknown name {msg}; see 'probpath info' for valid names"),
    (ValueError, "{msg}"),
    (TypeError, "{msg}"),
    (OSError, "{msg}"),
    (RuntimeError, "{msg}"),
)  # fmt: skip


def describe(exc: BaseException) -> tuple[str, int]:
    """``(one-line message, exit code)`` for an exception that reached the boundary."""
    msg = _message(exc)
    for cls, template in _EXPECTED:
        if isinstance(exc, cls):
            return _one_line(template.format(msg=msg)), 2
    return (
        f"internal error ({type(exc).__name__}: {msg}); set PROBPATH_DEBUG=1 for the "
        "traceback and report it",
        1,
    )


def _report_warnings(caught: list[warnings.WarningMessage]) -> None:
    seen: set[str] = set()
    for w in caught:
        line = _one_line(f"{w.category.__name__}: {w.message}")
        if line not in seen:
            seen.add(line)
            typer.echo(f"warning: {line}", err=True)


class OneLineErrors(TyperGroup):
    """The typer group whose ``main`` is the boundary (usage errors included)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        code = self._guarded(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _guarded(self, args, prog_name, complete_var, **extra) -> Any:
        debug = debug_enabled()
        with warnings.catch_warnings(record=not debug) as caught:
            if not debug:
                warnings.simplefilter("default")
            try:
                rv = super().main(
                    args=args,
                    prog_name=prog_name,
                    complete_var=complete_var,
                    standalone_mode=False,
                    **extra,
                )
            except BaseException as exc:  # noqa: BLE001 - this is the boundary
                return self._failure(exc, debug)
        _report_warnings(caught or [])
        return rv if isinstance(rv, int) else 0

    @staticmethod
    def _failure(exc: BaseException, debug: bool) -> int:
        if isinstance(exc, SystemExit):
            return exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc, typer.Exit):
            return exc.exit_code
        if isinstance(exc, KeyboardInterrupt | typer.Abort):
            typer.echo("error: interrupted", err=True)
            return 130
        if hasattr(exc, "exit_code") and hasattr(exc, "format_message"):  # click usage errors
            if type(exc).__name__ == "NoArgsIsHelpError":
                return exc.exit_code  # the help text has been printed already
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "probpath"
            message = _one_line(exc.format_message())
            typer.echo(f"error: {message} (see '{where} --help')", err=True)
            return exc.exit_code
        if debug or not isinstance(exc, Exception):
            raise exc
        message, code = describe(exc)
        typer.echo(f"error: {message}", err=True)
        return code
