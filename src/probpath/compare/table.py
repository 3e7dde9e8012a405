"""The comparison table: one :class:`CompareRow` per model, Markdown and CSV output."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CompareResult",
    "CompareRow",
    "csv_text",
    "fmt_value",
    "format_markdown",
    "nll_cell",
    "table_cells",
]


@dataclass
class CompareRow:
    """One model's line of the table (``None`` = not measured; ``status`` explains failures)."""

    model: str
    route: str
    section: str
    nfe: int | None = None
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
            "rows": [asdict(r) for r in self.rows],
        }


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


def table_cells(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    """Column headers (with units and ↓ = lower is better) and one row of cells per model,
    plus the noise-floor row when measured: what ``table.md`` and ``report.html`` show."""
    unit = result.settings.get("nll_unit", "nats/dim")
    cols = [
        "model",
        "route (survey §)",
        "sampler",
        "NFE / sample",
        "train s (steps)",
        "sample s / 1k",
        f"NLL {unit} ↓",
        "MMD² ↓ [a]",
        "SW₂ ↓ [b]",
        "energy ↓ [c]",
    ]
    features = any(r.fd_features is not None for r in result.rows)
    if features:
        cols.append("FD features ↓ [d]")
    rows = []
    for r in result.rows:
        if r.status != "ok":
            cells = [r.model, f"{r.route} {r.section}", r.status] + [""] * (len(cols) - 3)
        else:
            steps = "fit" if r.train_steps is None else str(r.train_steps)
            cells = [
                r.model,
                f"{r.route} {r.section}",
                r.sampler or "—",
                "—" if r.nfe is None else str(r.nfe),
                f"{fmt_value(r.train_seconds, 3)} ({steps})",
                fmt_value(r.sample_seconds_per_1k, 3),
                nll_cell(r),
                fmt_value(r.mmd),
                fmt_value(r.swd),
                fmt_value(r.energy),
            ] + ([fmt_value(r.fd_features)] if features else [])
        rows.append(cells)
    if result.floor:
        f = result.floor
        cells = ["noise floor [e]", "held-out data vs training data", "", "", "", "", ""]
        cells += [fmt_value(f.get("mmd")), fmt_value(f.get("swd")), fmt_value(f.get("energy"))]
        rows.append(cells + ([fmt_value(f.get("fd_features"))] if features else []))
    return cols, rows


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
    notes = "\n".join(f"- {n}" for n in result.notes)
    return head + "\n".join(lines) + "\n\n" + notes + "\n"


def csv_text(rows: list[CompareRow]) -> str:
    buf = io.StringIO()
    names = list(CompareRow.__dataclass_fields__)
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in asdict(r).items()})
    return buf.getvalue()
