"""``OUT/report.html``: one self-contained page for a comparison — the table (units, ↓ = lower
is better, the noise floor), the notes, sample grids, 2-D density plots, training curves,
the exact command and the versions. Images are embedded PNGs (``data:`` URIs): the page
needs no other file and no network."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from pathlib import Path

import torch

from probpath.compare.table import CompareResult, table_cells
from probpath.core.serialization import atomic_write_bytes

__all__ = ["density_figure", "render_report", "training_curves_figure", "write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr.floor td { font-style: italic; background: #fafafa; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
code, pre { background: #f6f6f6; padding: 2px 4px; white-space: pre-wrap; word-break: break-all; }
"""


def _png_tag(title: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    alt = html.escape(title)
    img = f'<img alt="{alt}" src="data:image/png;base64,{data}">'
    return f"<figure>{img}<figcaption>{alt}</figcaption></figure>"


def render_report(
    result: CompareResult,
    images: list[tuple[str, bytes]],
    *,
    command: str,
    environment: dict,
) -> str:
    """The page as a string.

    Args:
        result: what ``run_compare`` measured.
        images: ``(title, PNG bytes)`` in display order.
        command: the command line that produced the comparison.
        environment: versions, device and threads
            (:func:`probpath.training.seeding.environment`).
    """
    esc = html.escape
    cols, rows = table_cells(result)
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for cells in rows:
        cls = ' class="floor"' if cells[0].startswith("noise floor") else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    notes = "".join(f"<li>{esc(n)}</li>" for n in result.notes)
    env = "".join(f"<tr><td>{esc(str(k))}</td><td>{esc(str(v))}</td></tr>"
                  for k, v in environment.items())  # fmt: skip
    figures = "\n".join(_png_tag(t, png) for t, png in images)
    title = f"probpath compare — {result.dataset}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{esc(title)}</h1>
<p>{result.n_train} training / {result.n_test} held-out samples, {result.dim} dimensions.
↓: lower is better. Every score is computed in the data's own space.</p>
<h2>Results</h2>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
<ul>{notes}</ul>
<h2>Figures</h2>
{figures}
<h2>How this was made</h2>
<pre>{esc(command)}</pre>
<table>{env}</table>
<script>
// how many figures decoded (read by tests and visible in the page's DOM)
window.addEventListener("load", () => {{
  const imgs = Array.from(document.images);
  const ok = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = ok + "/" + imgs.length;
}});
</script>
</body></html>
"""


def write_report(path: str | Path, page: str) -> Path:
    """Write the page atomically."""
    return atomic_write_bytes(Path(path), page.encode("utf-8"))


def _panels(n: int, *, height: float, width: float = 3.0, max_cols: int = 4):
    """A figure with ``n`` panels in rows of at most ``max_cols`` (spare panels hidden)."""
    from matplotlib.figure import Figure

    ncols = min(max_cols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes[:n]


def training_curves_figure(histories: dict[str, list[dict]]) -> bytes | None:
    """Training loss against step, one small panel per neural model (PNG bytes)."""

    from probpath.plotting import figure_bytes

    curves = {k: [(r["step"], r["loss"]) for r in h if "loss" in r] for k, h in histories.items()}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    fig, axes = _panels(len(curves), height=2.4)
    for ax, (name, points) in zip(axes, curves.items()):
        steps, losses = zip(*points)
        ax.plot(steps, losses, lw=1.2, marker="o" if len(steps) < 10 else None, ms=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
        ax.tick_params(labelsize=7)
    return figure_bytes(fig)


def density_figure(
    densities: dict[str, Callable[[torch.Tensor], torch.Tensor]], data: torch.Tensor
) -> bytes | None:
    """Contours of each model's density over the 2-D held-out data (PNG bytes)."""
    if not densities:
        return None

    from probpath.plotting import figure_bytes, plot_density

    fig, axes = _panels(len(densities), height=3.0)
    low, high = float(data.min()), float(data.max())
    pad = 0.1 * (high - low) + 1e-3
    for ax, (name, log_prob) in zip(axes, densities.items()):
        plot_density(ax, log_prob, data, lim=(low - pad, high + pad), n_grid=60,
                     dtype=torch.float64)  # fmt: skip
        ax.set_title(f"{name}: density", fontsize=9)
    return figure_bytes(fig)
