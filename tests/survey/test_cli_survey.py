"""``probpath survey``: bad input is one clear line; a tiny budget on one table runs end to end
(the CI smoke test); rows that cannot run say why."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from probpath.cli.main import app
from probpath.survey.runner import PENDING, SurveyData, run_table
from probpath.survey.specs import RowSpec, TableSpec, budget_from

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tables", "7"], "--tables must be"),
        (["--budget", "fast"], "--budget must be"),
        (["--seeds", "-1"], "--seeds must be"),
        (["--device", "cuda:99"], "cuda:99"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    result = runner.invoke(app, ["survey", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_pending_and_failed_rows_are_listed_not_dropped():
    spec = TableSpec(
        9,
        "t",
        "digits",
        ("fd_features",),
        (
            RowSpec("latent", "no-such-entry"),
            RowSpec("solver", "ddpm", "solver", base="never-trained"),
        ),
        noise_floor=False,
    )
    data = SurveyData("digits", None, None, torch.zeros(1), None)
    out = run_table(spec, budget_from(1), (0, 1), torch.device("cpu"), data=data, log=print)
    by_row = {}
    for r in out["records"]:
        by_row.setdefault(r["row"], []).append(r)
    assert [r["status"] for r in by_row["latent"]] == [PENDING]  # listed once, never run
    assert [r["seed"] for r in by_row["solver"]] == [0, 1]
    assert all("was not trained" in r["status"] for r in by_row["solver"])


def test_smoke_table4_tiny_budget(tmp_path):
    """The CI smoke test: one table, a 0.5-second budget per model, one seed."""
    out = tmp_path / "survey"
    result = runner.invoke(
        app, ["survey", "--tables", "4", "--budget", "0.5", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "survey.json", "table4.md"]
    doc = json.loads((out / "survey.json").read_text())
    assert doc["budget"]["name"] == "0.5s" and doc["seeds"] == [0]
    assert doc["command"].startswith("probpath") and "torch" in doc["environment"]
    records = doc["tables"]["4"]["records"]
    assert {r["row"] for r in records} == {r["label"] for r in doc["tables"]["4"]["summary"]}
    for r in records:
        assert r["status"] == "ok", r
        assert r["seed"] == 0
        if "factor_cls" in r["values"]:  # an accuracy in percent
            assert 0.0 <= r["values"]["factor_cls"] <= 100.0
        else:  # bits/dim of dequantised 17-level digits: positive and finite
            assert r["values"]["bits_per_dim"] > 0
    md = (out / "table4.md").read_text()
    assert "Factor-CLS [%] ↑" in md and "β-VAE (β = 4)" in md
