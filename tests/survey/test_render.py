"""Aggregation over seeds and the Markdown / HTML outputs, on hand-made records."""

from __future__ import annotations

import math

from probpath.survey.render import aggregate, format_cell, report_html, table_markdown
from probpath.survey.runner import PENDING
from probpath.survey.specs import RowSpec, TableSpec

SPEC = TableSpec(
    9,
    "test <table>",
    "digits",
    ("nfe", "fd_features", "precision"),
    (
        RowSpec("a", "cfm", published="P: 1.0"),
        RowSpec("b", "no-such-entry"),
        RowSpec("c", "gan"),
    ),
    note="a note",
)


def _rec(row, seed, status="ok", **values):
    return {"row": row, "entry": "x", "seed": seed, "status": status, "seconds": 1.0,
            "values": values}  # fmt: skip


RECORDS = [
    _rec("a", 0, nfe="20", fd_features=1.0, precision=0.5),
    _rec("a", 1, nfe="20", fd_features=2.0, precision=float("nan")),
    _rec("a", 2, nfe="19", fd_features=3.0, precision=0.7),
    _rec("b", None, PENDING),
    _rec("c", 0, nfe="1", fd_features=4.0, precision=0.1),
    _rec("c", 1, "failed: RuntimeError: boom"),
]


def test_mean_and_sample_sd_over_seeds():
    rows = {r["label"]: r for r in aggregate(SPEC, RECORDS)}
    fd = rows["a"]["cells"]["fd_features"]
    # values 1, 2, 3: mean 2, sample sd sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1
    assert fd["mean"] == 2.0 and math.isclose(fd["sd"], 1.0, rel_tol=0, abs_tol=1e-15)
    # a non-finite value (a diverged seed) is left out of the mean: (0.5 + 0.7) / 2
    assert math.isclose(rows["a"]["cells"]["precision"]["mean"], 0.6, abs_tol=1e-15)
    assert rows["a"]["cells"]["nfe"]["text"] == "19 / 20"
    # one seed of c ok, one failed: mean of the one, no sd
    assert rows["c"]["cells"]["fd_features"] == {"values": [4.0], "mean": 4.0, "sd": None}
    assert rows["c"]["n_ok"] == 1 and rows["c"]["n_runs"] == 2


def test_cells():
    assert format_cell("fd_features", {"mean": 2.0, "sd": 1.0}) == "2 ± 1"
    assert format_cell("fd_features", {"mean": 12.345, "sd": None}) == "12.3"
    assert format_cell("fd_features", {"mean": None}) == "—"
    assert format_cell("nfe", {"text": None}) == "—"


def test_markdown_lists_pending_and_failed_rows_with_their_reason():
    rows = aggregate(SPEC, RECORDS)
    md = table_markdown(SPEC, rows, {"fd_features": 0.5, "precision": 0.9}, ["n1"])
    lines = md.splitlines()
    assert lines[0] == "## Table 9: test <table>"
    assert lines[2] == (
        "| Model | NFE ↓ | FD features ↓ | precision ↑ | Status | Survey (published) |"
    )
    b = next(line for line in lines if line.startswith("| b |"))
    assert PENDING in b
    c = next(line for line in lines if line.startswith("| c |"))
    assert "1/2 ok; failed: RuntimeError: boom" in c
    floor = next(line for line in lines if line.startswith("| noise floor"))
    assert "| 0.5 |" in floor and "| 0.9 |" in floor
    assert "- a note" in lines and "- n1" in lines


def test_html_escapes_and_holds_every_table():
    rows = aggregate(SPEC, RECORDS)
    page = report_html([(SPEC, rows, None, [])], command="probpath survey <x>", environment={})
    assert "test &lt;table&gt;" in page and "<table>" in page.replace("test <table>", "")
    assert "probpath survey &lt;x&gt;" in page
