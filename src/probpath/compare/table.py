"""The comparison table: one :class:`CompareRow` per model, Markdown and CSV output.

The metric columns, their headers (label, unit, ↑ / ↓) and footnotes come from
:data:`probpath.metrics.registry.METRICS`: every registered metric with ``in_compare`` is a
:class:`CompareRow` field of the same name (the NLL has its unit, kind and note besides).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from probpath.metrics.registry import METRICS, MetricSpec, header

__all__ = [
    "CompareResult",
    "CompareRow",
    "TABLE_METRICS",
    "csv_text",
    "fmt_value",
    "json_safe",
    "format_markdown",
    "metric_notes",
    "nll_cell",
    "shown_metrics",
    "table_cells",
]


@dataclass
class CompareRow:
    """One model's line of the table (``None`` = not measured; ``status`` explains failures)."""

    model: str
    route: str
    section: str
    nfe: int | None = None
    nfe_text: str | None = None
    train_seconds: float | None = None
    train_steps: int | None = None
    sample_seconds_per_1k: float | None = None
    nll: float | None = None
    nll_unit: str = "nats/dim"
    nll_kind: str = "none"
    nll_note: str = ""
    mmd: float | None = None
    swd: float | None = None
    energy: float | None = None
    fd_features: float | None = None
    class_accuracy: float | None = None
    fd_per_class: float | None = None
    guidance: float | None = None
    conditional: bool = False
    sampler: str = ""
    status: str = "ok"


@dataclass
class CompareResult:
    """Everything ``run_compare`` measured, plus where it wrote the files."""

    rows: list[CompareRow]
    dataset: str
    n_train: int
    n_test: int
    dim: int
    settings: dict[str, Any]
    notes: list[str]
    floor: dict[str, float] | None = None
    spread: dict[str, dict[str, float]] | None = None
    markdown: str = ""
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``table.json``)."""
        return {
            "dataset": self.dataset,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "dim": self.dim,
            "settings": self.settings,
            "notes": self.notes,
            "noise_floor": self.floor,
            "spread": self.spread,
            "rows": [asdict(r) for r in self.rows],
        }


def json_safe(obj):
    """``obj`` with every non-finite float (at any depth of dicts / lists) as ``None``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def fmt_value(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "—"
    if not math.isfinite(v):
        return "nan"
    if v != 0 and (abs(v) < 10 ** -(digits - 1) or abs(v) >= 1e5):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}f}"


def nll_cell(row: CompareRow) -> str:
    if row.nll is None:
        return f"none — {row.nll_note}" if row.nll_note else "none"
    return f"{row.nll:.3f} ({row.nll_kind})"


#: The metric columns of ``compare``, in table order (registry specs with ``in_compare``).
TABLE_METRICS: tuple[MetricSpec, ...] = tuple(s for s in METRICS.values() if s.in_compare)
#: Metrics always shown; the others only when some row has a value.
_ALWAYS = ("nll", "mmd", "swd", "energy")


def shown_metrics(result: CompareResult) -> list[MetricSpec]:
    """The metric columns of this table."""
    return [
        s
        for s in TABLE_METRICS
        if s.name in _ALWAYS or any(getattr(r, s.name) is not None for r in result.rows)
    ]


def _letters(specs: list[MetricSpec]) -> dict[str, str]:
    """Footnote letters of the sample metrics ([a], [b], ...); the NLL has its own notes."""
    named = [s.name for s in specs if not s.needs_density]
    return {name: chr(ord("a") + i) for i, name in enumerate(named)}


def _nfe_cell(r: CompareRow) -> str:
    if r.nfe_text:
        return r.nfe_text
    return "—" if r.nfe is None else str(r.nfe)


def _metric_cell(r: CompareRow, spec: MetricSpec, spread: dict[str, float] | None) -> str:
    if spec.needs_density:
        cell = nll_cell(r)
    else:
        cell = fmt_value(getattr(r, spec.name))
    sd = (spread or {}).get(spec.name)
    return cell if sd is None or getattr(r, spec.name) is None else f"{cell} ± {fmt_value(sd, 2)}"


def table_cells(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    """Column headers (label, unit, ↑ / ↓ and footnote letter from the metric registry) and
    one row of cells per model, plus the noise-floor row when measured: what ``table.md``
    and ``report.html`` show. With a seed spread the metric cells read "mean ± sd"."""
    unit = result.settings.get("nll_unit", "nats/dim")
    specs = shown_metrics(result)
    letters = _letters(specs)
    cols = ["model", "route (survey §)", "sampler", "NFE / sample", "train s (steps)",
            "sample s / 1k"]  # fmt: skip
    for spec in specs:
        h = header(spec, unit if spec.needs_density else None)
        cols.append(f"{h} [{letters[spec.name]}]" if spec.name in letters else h)
    fixed = 6
    rows = []
    for r in result.rows:
        if r.status != "ok":
            cells = [r.model, f"{r.route} {r.section}", r.status] + [""] * (len(cols) - 3)
        else:
            steps = "fit" if r.train_steps is None else str(r.train_steps)
            spread = (result.spread or {}).get(r.model)
            cells = [
                r.model,
                f"{r.route} {r.section}",
                r.sampler or "—",
                _nfe_cell(r),
                f"{fmt_value(r.train_seconds, 3)} ({steps})",
                fmt_value(r.sample_seconds_per_1k, 3),
            ] + [_metric_cell(r, s, spread) for s in specs]
        rows.append(cells)
    if result.floor:
        f = result.floor
        floor = chr(ord("a") + len(letters))
        cells = [f"noise floor [{floor}]", "held-out data vs training data"] + [""] * (fixed - 2)
        cells += ["" if s.needs_density else fmt_value(f.get(s.name)) for s in specs]
        rows.append(cells)
    return cols, rows


def metric_notes(result: CompareResult) -> list[str]:
    """The footnotes of the metric columns, from the registry's descriptions."""
    specs = shown_metrics(result)
    letters = _letters(specs)
    notes = [f"[{letters[s.name]}] {s.description}." for s in specs if s.name in letters]
    if result.floor:
        features = any(s.needs_features for s in specs)
        notes.append(
            f"[{chr(ord('a') + len(letters))}] noise floor: the same distances between "
            f"{result.n_test} training points (an independent draw of the data) and the "
            "held-out points — what a perfect model would score at this sample size."
            + (" The feature floor is optimistic: the feature classifier was trained on "
               "training points." if features else "")
        )  # fmt: skip
    if result.spread:
        notes.append(
            "± is the standard deviation over the training seeds "
            f"{result.settings.get('seeds')} (sample sd, n - 1); the held-out split is fixed."
        )
    return notes


def format_markdown(result: CompareResult) -> str:
    """The Markdown table plus footnotes (what ``table.md`` holds and stdout shows)."""
    head = (
        f"## probpath compare — {result.dataset} ({result.n_train} train / {result.n_test} "
        f"held out, {result.dim} dims)\n\n"
    )
    cols, rows = table_cells(result)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for cells in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    notes = "\n".join(f"- {n}" for n in [*result.notes, *metric_notes(result)])
    return head + "\n".join(lines) + "\n\n" + notes + "\n"


def csv_text(rows: list[CompareRow]) -> str:
    buf = io.StringIO()
    names = list(CompareRow.__dataclass_fields__)
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in asdict(r).items()})
    return buf.getvalue()
