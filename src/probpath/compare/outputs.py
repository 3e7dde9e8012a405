"""What a comparison writes: ``table.md`` / ``.csv`` / ``.json``, the sample grid
``samples.png`` and the page ``report.html`` (rendered by :mod:`probpath.compare.report`)."""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from probpath.compare.report import density_figure, render_report, training_curves_figure
from probpath.compare.table import CompareResult, csv_text, json_safe
from probpath.core.serialization import atomic_write_bytes
from probpath.data.dataset import Dataset
from probpath.training.seeding import environment

__all__ = ["command_line", "report_page", "samples_grid", "write_outputs"]


def write_outputs(
    result: CompareResult,
    out_dir: Path,
    figure_samples: dict[str, torch.Tensor],
    test: Dataset,
    figure: bool,
    *,
    sweep: list[dict] | None = None,
) -> None:
    """Write ``table.md``, ``table.csv``, ``table.json``, (``figure``) ``samples.png`` and
    (a guidance ``sweep``) ``fd_vs_guidance.png`` into ``out_dir``, each atomically; record
    them in ``result.files``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "table.md": result.markdown.encode(),
        "table.csv": csv_text(result.rows).encode(),
        "table.json": (
            json.dumps(json_safe(result.to_dict()), indent=2, allow_nan=False) + "\n"
        ).encode(),
    }
    for name, data in files.items():
        result.files[name] = atomic_write_bytes(out_dir / name, data)
    if sweep:
        from probpath.compare.guidance import guidance_figure

        path = out_dir / "fd_vs_guidance.png"
        model = result.settings.get("guidance_sweep_model")
        result.files[path.name] = guidance_figure(sweep, path, model)
    if figure and figure_samples:
        path = out_dir / "samples.png"
        result.files["samples.png"] = samples_grid(
            figure_samples, test.x[:64].double(), path, value_range=test.value_range
        )
    result.out_dir = out_dir


def report_page(
    result: CompareResult,
    reference: torch.Tensor,
    densities: dict[str, Any],
    histories: dict[str, list[dict]],
    command: str,
    device: torch.device,
) -> str:
    """``report.html``: the table, sample grids, densities (2-D data: ``densities`` maps a
    model to its data-space ``log_prob``, drawn over ``reference``), training curves."""
    images = []
    if "samples.png" in result.files:
        images.append(("Samples: held-out data and each model", result.files["samples.png"]))
    if tuple(reference.shape[1:]) == (2,):
        png = density_figure(densities, reference)
        if png is not None:
            images.append(("Densities of the models with a cheap exact log p", png))
    if "fd_vs_guidance.png" in result.files:
        sweep = result.files["fd_vs_guidance.png"]
        images.append(("FD features and class accuracy vs guidance", sweep))
    png = training_curves_figure(histories)
    if png is not None:
        images.append(("Training loss of the neural models", png))
    images = [(t, p.read_bytes() if isinstance(p, Path) else p) for t, p in images]
    return render_report(result, images, command=command, environment=environment(device))


def command_line() -> str:
    """This process's command line as the user typed it (``probpath ...``)."""
    argv = sys.argv
    if argv and Path(argv[0]).name in ("probpath", "__main__.py"):
        return shlex.join(["probpath", *argv[1:]])
    return shlex.join(argv) + "  (run_compare called from Python)"


def samples_grid(
    models_samples: dict[str, torch.Tensor],
    data: torch.Tensor,
    path: str | Path,
    *,
    value_range: tuple[float, float] | None = None,
    panel_size: float = 2.6,
) -> Path:
    """The held-out data and each model's samples as a grid of panels, saved to ``path``.

    All panels share one view: the data's axis limits for 2-D data, the data's value range
    for images, the data's first two principal axes for other vectors.

    Args:
        models_samples: ``{name: (n, *event_shape) samples}`` in the data's space.
        data: ``(m, *event_shape)`` reference data.
        path: output image file (written atomically).
        value_range: pixel range of image data.
        panel_size: inches per panel.
    """
    from matplotlib.figure import Figure

    from probpath.plotting import plot_samples, save_figure

    shape = tuple(data.shape[1:])
    flat = data.reshape(len(data), -1).double()
    lim = projection = None
    if flat.shape[1] == 2 and len(shape) == 1:
        low, high = float(flat.min()), float(flat.max())
        pad = 0.1 * (high - low) + 1e-3
        lim = (low - pad, high + pad)
    elif flat.shape[1] > 2 and len(shape) != 3:
        mean = flat.mean(0)
        _, _, vt = torch.linalg.svd(flat - mean, full_matrices=False)
        projection = (mean.numpy(), vt[:2].T.numpy())
    panels = {"held-out data": data, **models_samples}
    ncols = min(len(panels), 6)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(panel_size * ncols, panel_size * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    for ax, (title, x) in zip(axes, panels.items()):
        plot_samples(ax, x, shape, title, lim=lim, value_range=value_range, projection=projection)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    return save_figure(fig, path)
