"""``probpath info``: the models, paths, samplers and data sets."""

from __future__ import annotations

import io

import typer

from probpath.cli.app import app

__all__ = ["info"]


@app.command()
def info() -> None:
    """List the models, probability paths (schedules), samplers and data sets.

    Each model line gives its name (for fit and compare), the survey route and section,
    the kind of likelihood it reports (exact, bound or none), the data it takes and a
    one-line summary.

    Example: probpath info
    """
    from probpath.catalog import CATALOG

    out = io.StringIO()
    entries = list(CATALOG)
    out.write(f"Models ({len(entries)}):\n")
    out.write(f"  {'name':<18} {'route':<12} {'§':<8} {'likelihood':<10} {'data':<7} summary\n")
    for e in entries:
        caps = e.cls.capabilities
        flag = "" if e.in_compare else " [not in compare]"
        out.write(
            f"  {e.name:<18} {caps.route:<12} {caps.section:<8} {caps.likelihood_kind:<10} "
            f"{e.data:<7} {e.summary}{flag}\n"
        )
    out.write("\nPaths (noise schedules x_t = alpha_t x0 + sigma_t eps, t = 0 data, 1 noise):\n")
    out.write(_schedules_text())
    out.write("\nSamplers (probpath sample RUN --sampler NAME --steps K):\n")
    out.write(_samplers_text())
    out.write("\nData sets (--data NAME, or a path to .npy/.npz/.csv/IDX/image folder):\n")
    out.write(_datasets_text())
    typer.echo(out.getvalue().rstrip("\n"))


def _first_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].replace("``", "") if doc else ""


def _schedules_text() -> str:
    try:
        from probpath.paths.schedules import SCHEDULES
    except ImportError:
        return "  (not available in this build)\n"
    return "".join(f"  {name:<18} {_first_line(cls)}\n" for name, cls in SCHEDULES.items())


def _samplers_text() -> str:
    try:
        from probpath.sampling import SAMPLERS
    except ImportError:
        return "  (not available in this build)\n"
    return "".join(f"  {name:<18} {_first_line(fn)}\n" for name, fn in SAMPLERS.items())


def _datasets_text() -> str:
    try:
        from probpath.data import available_datasets
    except ImportError:
        return "  (not available in this build)\n"
    return "  " + ", ".join(available_datasets()) + "\n"
