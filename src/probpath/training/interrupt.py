"""Runs that survive Ctrl-C: SIGINT / SIGTERM end training after the current step with a
resumable checkpoint, and say how to continue.

The first signal sets a flag that the training loop reads after each step: it writes a
checkpoint (the same commit as a periodic one, so resuming is bit-exact) and raises
:class:`TrainingInterrupted`, a ``KeyboardInterrupt`` that names the checkpoint. A second
signal while that happens (more than a second later) interrupts at once (the last committed
checkpoint stays valid: checkpoint writes are atomic). Under ``torchrun`` every rank catches
the signals and the ranks agree after each step (``distributed.agree_on_signal``): rank 0
writes the checkpoint and every rank stops.
"""

from __future__ import annotations

import shlex
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SignalFlag",
    "TrainingInterrupted",
    "catch_signals",
    "parse_ckpt_every",
    "resume_command",
]

_SIGNALS = ("SIGINT", "SIGTERM")
#: A second signal this soon after the first is a copy (Ctrl-C under torchrun reaches a worker
#: from the terminal and again from the agent), not a request to stop at once.
_ECHO_SECONDS = 1.0


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT / SIGTERM after writing a resumable checkpoint.

    Attributes:
        step: optimizer steps done (the checkpoint's step).
        checkpoint: the run directory to pass as ``resume=``.
        signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
    """

    def __init__(self, message: str, *, step: int, checkpoint: Path, signal_name: str):
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint
        self.signal_name = signal_name

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class SignalFlag:
    """Set by the handler: the name of the first signal received (``None``: none yet) and
    when (``time.monotonic()``)."""

    name: str | None = None
    at: float = 0.0


@contextmanager
def catch_signals(enabled: bool = True) -> Iterator[SignalFlag]:
    """Turn SIGINT / SIGTERM into a flag while the block runs (main thread only).

    Outside the main thread, or with ``enabled=False``, the flag never sets and the signals
    keep their handlers. The previous handlers are restored on exit.
    """
    flag = SignalFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handle(signum, frame):
        if flag.name is not None:  # a second one: stop now, unless it is a forwarded copy
            if time.monotonic() - flag.at > _ECHO_SECONDS:
                raise KeyboardInterrupt
            return
        flag.name, flag.at = signal.Signals(signum).name, time.monotonic()

    previous = {}
    for name in _SIGNALS:
        sig = getattr(signal, name)
        previous[sig] = signal.signal(sig, handle)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def parse_ckpt_every(text: str) -> tuple[int | None, float | None]:
    """``--ckpt-every``: ``"60"`` / ``"60s"`` (seconds), ``"500steps"`` (steps), ``"off"``.

    Returns:
        ``(steps, seconds)``, one of them ``None`` (both for ``"off"``).

    Raises:
        ValueError: anything else, or a value that is not positive.

    >>> parse_ckpt_every("90s"), parse_ckpt_every("500steps"), parse_ckpt_every("off")
    ((None, 90.0), (500, None), (None, None))
    """
    raw = str(text).strip().lower().replace(" ", "")
    if raw in ("off", "never", "none"):
        return None, None
    try:
        if raw.endswith("steps") or raw.endswith("step"):
            steps = int(raw.removesuffix("steps").removesuffix("step"))
            if steps >= 1:
                return steps, None
        else:
            seconds = float(raw.removesuffix("s"))
            if seconds > 0:
                return None, seconds
    except ValueError:
        pass
    raise ValueError(
        f"--ckpt-every must be seconds ('60' or '60s'), steps ('500steps') or 'off', got {text!r}"
    )


def resume_command(argv: Sequence[str], run_dir: str | Path) -> str:
    """The ``probpath fit`` command line that continues ``argv``'s run from ``run_dir``.

    ``--out`` / ``--overwrite`` / an old ``--resume`` are dropped (the resumed run is
    published where the first one was going) and ``--resume RUN_DIR`` is appended.

    >>> resume_command(["/venv/bin/probpath", "fit", "cfm", "--out", "runs/c", "--steps", "9"],
    ...                "runs/.c.partial")
    'probpath fit cfm --steps 9 --resume runs/.c.partial'
    """
    args = list(argv[1:])
    kept: list[str] = []
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        if arg in ("--out", "-o", "--resume"):
            skip_next = True
            continue
        if arg == "--overwrite" or arg.startswith(("--out=", "--resume=")):
            continue
        kept.append(arg)
    return shlex.join(["probpath", *kept, "--resume", str(run_dir)])
