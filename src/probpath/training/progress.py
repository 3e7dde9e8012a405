"""Progress you can see, in a terminal, a notebook or a log file.

* ``"bar"``: a ``tqdm.auto`` bar (a widget in Jupyter, text in a terminal);
* ``"lines"``: one plain line each time another tenth of the work is done or 30 s passed
  (log files, CI, ``nohup``: no carriage returns);
* ``"off"``: nothing (``--quiet``).

``"auto"`` picks a bar where someone watches (a terminal or a notebook) and lines elsewhere.
:class:`Progress` follows a counted loop (training steps, sampler steps); :func:`phase`
wraps one long call without a loop (sampling, scoring) and prints a heartbeat line every
30 s while it runs.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["PROGRESS_MODES", "Progress", "format_seconds", "phase", "resolve_mode"]

PROGRESS_MODES = ("auto", "bar", "lines", "off")
_ALIASES = {"on": "bar"}  # TrainConfig(progress="on"): the bar, as before


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where stderr is not a TTY but a widget is)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - any failure means "not a notebook"
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def resolve_mode(mode: str, file: TextIO | None = None) -> str:
    """``"auto"`` -> ``"bar"`` on a terminal or in a notebook, ``"lines"`` otherwise.

    Raises:
        ValueError: an unknown mode.
    """
    mode = _ALIASES.get(mode, mode)
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress must be one of {PROGRESS_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    stream = file if file is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return "bar" if (callable(isatty) and isatty()) or _in_notebook() else "lines"


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``.

    >>> format_seconds(42.4), format_seconds(185), format_seconds(3720)
    ('42 s', '3 min 05 s', '1 h 02 min')
    """
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """Progress of ``total`` units of work (``None``: unknown; a fraction may be given).

    Args:
        total: units in all (e.g. optimizer steps), or ``None``.
        desc: what is running, e.g. ``"train ddpm"``.
        mode: ``"auto"``, ``"bar"``, ``"lines"`` or ``"off"`` (see the module docstring).
        initial: units already done (a resumed run).
        unit: the unit's name.
        file: the stream (default ``sys.stderr``).
        every: in ``"lines"`` mode, a line each time this share of the work is done ...
        interval: ... or this many seconds passed since the last line.
        clock: seconds since an arbitrary origin (tests pass a fake one).

    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress(4, "demo", mode="lines", file=out, every=0.5)
    >>> for _ in range(4):
    ...     p.update()
    >>> p.close()
    >>> print(out.getvalue().splitlines()[-1])
    demo: 4/4 steps (100 %), 0 s
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        mode: str = "auto",
        initial: int = 0,
        unit: str = "step",
        file: TextIO | None = None,
        every: float = 0.1,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.file = file if file is not None else sys.stderr
        self.mode = resolve_mode(mode, self.file)
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.start_n = int(initial)
        self.every, self.interval, self.clock = float(every), float(interval), clock
        self.t0 = self.last_time = clock()
        self.fraction = self._fraction(None)
        self.next_fraction = (math.floor(self.fraction / self.every) + 1) * self.every
        self.postfix = ""
        self.printed_n = self.n
        self.closed = False
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, file=self.file,
                dynamic_ncols=True,
            )  # fmt: skip

    def _fraction(self, given: float | None) -> float:
        parts = [] if given is None else [given]
        if self.total:
            parts.append(self.n / self.total)
        return min(1.0, max(parts)) if parts else 0.0

    def update(self, n: int = 1, *, fraction: float | None = None) -> None:
        """Count ``n`` more units; ``fraction`` (e.g. of a time budget) may run ahead."""
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        if self.mode != "lines":
            return
        self.fraction = self._fraction(fraction)
        now = self.clock()
        if self.fraction >= self.next_fraction - 1e-12 or now - self.last_time >= self.interval:
            self._line(now)
            self.next_fraction = (math.floor(self.fraction / self.every + 1e-9) + 1) * self.every

    def set_postfix(self, **values) -> None:
        """Values shown after the counts, e.g. ``loss=0.123``."""
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def _line(self, now: float) -> None:
        elapsed = now - self.t0
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        text = f"{self.desc}: {count} {self.unit}s ({100 * self.fraction:.0f} %), "
        text += format_seconds(elapsed)
        done = self.fraction - self._start_fraction()
        if 0 < done and self.fraction < 1:
            text += f", ETA {format_seconds(elapsed * (1 - self.fraction) / done)}"
        if self.postfix:
            text += f", {self.postfix}"
        print(text, file=self.file, flush=True)
        self.last_time, self.printed_n = now, self.n

    def _start_fraction(self) -> float:
        return self.start_n / self.total if self.total else 0.0

    def close(self) -> None:
        """Finish: close the bar, or print a last line if work was done since the last one."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines" and self.n != self.printed_n:
            self._line(self.clock())


@contextmanager
def phase(
    desc: str,
    *,
    mode: str = "auto",
    file: TextIO | None = None,
    interval: float = 30.0,
    announce_after: float = 0.0,
) -> Iterator[None]:
    """Announce one long call, repeat ``still running`` every ``interval`` s, time it.

    Prints ``desc ...`` once ``announce_after`` seconds passed (at once by default; a call
    that ends sooner prints nothing) and ``desc: done in T`` at the end, in every mode but
    ``"off"`` (a bar cannot follow a call without steps).

    >>> import io
    >>> out = io.StringIO()
    >>> with phase("sample ddpm", mode="lines", file=out):
    ...     pass
    >>> out.getvalue().splitlines()[0]
    'sample ddpm ...'
    """
    stream = file if file is not None else sys.stderr
    if resolve_mode(mode, stream) == "off":
        yield
        return
    t0 = time.monotonic()
    stop = threading.Event()
    announced = threading.Event()

    def announce() -> None:
        print(f"{desc} ...", file=stream, flush=True)
        announced.set()

    def beat() -> None:
        if announce_after > 0:
            if stop.wait(announce_after):
                return
            announce()
        while not stop.wait(interval):
            took = format_seconds(time.monotonic() - t0)
            print(f"{desc}: still running, {took}", file=stream, flush=True)

    if announce_after <= 0:
        announce()
    thread = threading.Thread(target=beat, name="probpath-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if announced.is_set():
        took = format_seconds(time.monotonic() - t0)
        print(f"{desc}: done in {took}", file=stream, flush=True)
