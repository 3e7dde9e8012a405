"""The survey's outputs: Markdown tables (mean ± sd over seeds), one HTML page, raw JSON."""

from __future__ import annotations

import html
import math
import statistics
from typing import Any

from probpath.survey.columns import COLUMNS, header
from probpath.survey.specs import TableSpec

__all__ = ["aggregate", "format_cell", "table_markdown", "report_html"]


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


def aggregate(spec: TableSpec, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per row of ``spec``: per column the seeds' values, their mean and sample
    standard deviation (``None`` with fewer than two seeds), and the row's statuses."""
    rows = []
    for row in spec.rows:
        mine = [r for r in records if r["row"] == row.label]
        ok = [r for r in mine if r["status"] == "ok"]
        cells: dict[str, Any] = {}
        for name in spec.columns:
            raw = [r["values"].get(name) for r in ok]
            if COLUMNS[name].text:
                labels = sorted({str(v) for v in raw if v is not None})
                cells[name] = {"text": " / ".join(labels) if labels else None}
                continue
            vals = _finite(raw)
            cells[name] = {
                "values": vals,
                "mean": statistics.fmean(vals) if vals else None,
                "sd": statistics.stdev(vals) if len(vals) > 1 else None,
            }
        statuses = sorted({r["status"] for r in mine if r["status"] != "ok"})
        rows.append(
            {
                "label": row.label,
                "entry": row.entry,
                "n_ok": len(ok),
                "n_runs": len(mine),
                "statuses": statuses,
                "published": row.published,
                "cells": cells,
            }
        )
    return rows


def format_cell(name: str, cell: dict[str, Any]) -> str:
    """``"12.3 ± 0.4"`` (mean ± sd over seeds), ``"12.3"`` (one seed), a label, or ``"—"``."""
    if COLUMNS[name].text:
        return cell.get("text") or "—"
    mean, sd = cell.get("mean"), cell.get("sd")
    if mean is None:
        return "—"
    d = COLUMNS[name].digits
    text = f"{mean:.{d}g}"
    return text if sd is None else f"{text} ± {sd:.2g}"


def _status(row: dict[str, Any]) -> str:
    if row["n_runs"] and row["n_ok"] == row["n_runs"]:
        return f"ok ({row['n_ok']} seeds)"
    if not row["n_runs"]:
        return "not run"
    parts = [f"{row['n_ok']}/{row['n_runs']} ok"] if row["n_ok"] else []
    return "; ".join(parts + row["statuses"])


def _cells(spec: TableSpec, rows: list[dict], floor: dict | None):
    heads = ["Model", *[header(c) for c in spec.columns], "Status", "Survey (published)"]
    body = [
        [r["label"], *[format_cell(c, r["cells"][c]) for c in spec.columns], _status(r),
         r["published"] or "—"]
        for r in rows
    ]  # fmt: skip
    if floor:
        body.append(
            ["noise floor (data vs data)"]
            + [format_cell(c, {"mean": floor.get(c)}) if c in floor else "—" for c in spec.columns]
            + ["two-sample floor", "—"]
        )
    return heads, body


def table_markdown(spec: TableSpec, rows: list[dict], floor: dict | None, notes: list[str]) -> str:
    """The table as Markdown: title, header, one line per row, the notes."""
    heads, body = _cells(spec, rows, floor)
    lines = [f"## Table {spec.number}: {spec.title}", ""]
    lines.append("| " + " | ".join(heads) + " |")
    lines.append("|" + "|".join("---" for _ in heads) + "|")
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in body]
    lines.append("")
    lines += [f"- {n}" for n in [spec.note, *notes] if n]
    return "\n".join(lines) + "\n"


def report_html(
    tables: list[tuple[TableSpec, list[dict], dict | None, list[str]]],
    *,
    command: str,
    environment: dict[str, Any],
) -> str:
    """One self-contained HTML page with every table, its notes, the command and versions."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>probpath survey</title>",
        "<style>body{font-family:sans-serif;max-width:75em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.2em .5em}"
        "th{background:#eee}</style></head><body><h1>probpath survey: Tables 1–4</h1>",
        f"<p>Command: <code>{esc(command)}</code></p>",
        "<p>Environment: " + esc(", ".join(f"{k} {v}" for k, v in environment.items())) + "</p>",
    ]
    for spec, rows, floor, notes in tables:
        heads, body = _cells(spec, rows, floor)
        parts.append(f"<h2>Table {spec.number}: {esc(spec.title)}</h2><table><tr>")
        parts += [f"<th>{esc(h)}</th>" for h in heads]
        parts.append("</tr>")
        for r in body:
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>")
        parts.append("</table><ul>")
        parts += [f"<li>{esc(n)}</li>" for n in [spec.note, *notes] if n]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
