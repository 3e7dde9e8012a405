"""``probpath info``: the models, paths, samplers and data sets.

The listing is static text (:data:`probpath.cli.info_text.INFO_TEXT`) so that ``probpath
info`` starts without importing torch; :func:`live_text` renders it from the catalog and
registries, a test checks both agree, and ``python -m probpath.cli.info`` rewrites the
static file after a model, schedule, sampler or data set is added.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import typer

from probpath.cli.app import app

__all__ = ["info", "live_text", "write_static"]


@app.command()
def info() -> None:
    """List the models, probability paths (schedules), samplers and data sets.

    Each model line gives its name (for fit and compare), the survey route and section,
    the kind of likelihood it reports (exact, bound or none), the data it takes and a
    one-line summary.

    Example: probpath info
    """
    from probpath.cli.info_text import INFO_TEXT

    typer.echo(INFO_TEXT)


def live_text() -> str:
    """The listing rendered from the catalog and the registries (imports torch)."""
    from probpath.catalog import CATALOG

    out = io.StringIO()
    entries = list(CATALOG)
    out.write(f"Models ({len(entries)}):\n")
    out.write(f"  {'name':<18} {'route':<12} {'§':<8} {'likelihood':<10} {'data':<7} summary\n")
    for e in entries:
        caps = e.cls.capabilities
        flag = "" if e.in_compare else " [not in compare]"
        if caps.conditional or caps.accepts_labels:  # needs / takes labels (fit --conditional)
            flag += " [conditional]" if caps.conditional else " [labels: --conditional]"
        out.write(
            f"  {e.name:<18} {caps.route:<12} {caps.section:<8} {caps.likelihood_kind:<10} "
            f"{e.data:<7} {e.summary}{flag}\n"
        )
    out.write("\nPaths (noise schedules x_t = alpha_t x0 + sigma_t eps, t = 0 data, 1 noise):\n")
    out.write(_schedules_text())
    out.write("\nSamplers (probpath sample RUN --sampler NAME --steps K):\n")
    out.write(_samplers_text())
    out.write(
        "\nGuidance (conditional path models): probpath sample RUN --class C --guidance W "
        "(classifier-free, (1 + w) f(x, t, c) - w f(x, t, null); NFE N×2)\n"
        "Classifier guidance (path models): probpath fit classifier --run RUN --out CLF, then "
        "probpath sample RUN --class C --classifier CLF --classifier-scale S\n"
        "Restoration (path models): probpath restore RUN --task inpaint|superres|deblur|denoise "
        "--method ddnm|pigdm|dps\n"
    )
    out.write("\nImage networks of the path models (--set network=dit), 1-channel images:\n")
    out.write(_networks_text())
    out.write("\nData sets (--data NAME, or a path to .npy/.npz/.csv/IDX/image folder):\n")
    out.write(_datasets_text())
    out.write("\nMetrics (evaluate --metrics NAME; compare's columns; ↑ / ↓ = better):\n")
    out.write(_metrics_text())
    return out.getvalue().rstrip("\n")


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
        from probpath.sampling import SAMPLER_SPECS
    except ImportError:
        return "  (not available in this build)\n"
    return "".join(f"  {name:<18} {spec.summary}\n" for name, spec in SAMPLER_SPECS.items())


def _networks_text() -> str:
    """Parameter counts of the default image networks (``num_parameters``; the positional
    tables are buffers, so the count does not depend on the image size)."""
    from probpath.core.model import num_parameters
    from probpath.sampling.path_model import build_path_network

    unet, dit = (build_path_network((1, 8, 8), 0, options) for options in (None, "dit"))
    return (
        f"  {'unet':<18} UNet, the default: {num_parameters(unet):,} parameters\n"
        f"  {'dit':<18} DiT, adaLN-Zero, patch {dit.patch_size}, depth {len(dit.blocks)}: "
        f"{num_parameters(dit):,} parameters\n"
    )


def _datasets_text() -> str:
    try:
        from probpath.data import available_datasets
    except ImportError:
        return "  (not available in this build)\n"
    return "  " + ", ".join(available_datasets()) + "\n"


def _metrics_text() -> str:
    from probpath.metrics.registry import METRICS

    def needs(s) -> str:
        parts = [("labels", s.needs_labels), ("features", s.needs_features),
                 ("density", s.needs_density), ("per class", s.per_class)]  # fmt: skip
        return ", ".join(p for p, on in parts if on) or "samples"

    return "".join(
        f"  {s.name:<15} {s.arrow} {needs(s):<28} {s.description}\n" for s in METRICS.values()
    )


def _metric_names() -> list[str]:
    from probpath.metrics.registry import METRICS

    return list(METRICS)


def write_static(path: Path | None = None) -> Path:
    """Rewrite ``info_text.py`` from :func:`live_text`."""
    path = path or Path(__file__).with_name("info_text.py")
    lines = "".join(
        f"        {json.dumps(line, ensure_ascii=False)},\n" for line in live_text().split("\n")
    )
    body = (
        "# ruff: noqa: E501\n"
        '"""The text of ``probpath info`` (generated by ``python -m probpath.cli.info``; do '
        'not edit)."""\n\n__all__ = ["INFO_TEXT", "METRIC_NAMES"]\n\n'
        + "#: probpath.metrics.registry.METRICS, for the CLI help (no torch import).\n"
        + "METRIC_NAMES = (\n"
        + "".join(f"    {json.dumps(name)},\n" for name in _metric_names())
        + ")\n\n"
        + 'INFO_TEXT = "\\n".join(\n    [\n'
        + lines
        + "    ]\n)\n"
    )
    path.write_text(body, encoding="utf-8")
    return path


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(f"wrote {write_static()}\n")
