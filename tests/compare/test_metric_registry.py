"""The metric registry is the one list: evaluate, compare's table, the CLI help and info agree
with it, and each registered function computes what its library function computes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from probpath.cli.info_text import INFO_TEXT, METRIC_NAMES
from probpath.compare import evaluation
from probpath.compare.table import (
    TABLE_METRICS,
    CompareResult,
    CompareRow,
    format_markdown,
    table_cells,
)
from probpath.metrics import energy_distance, frechet_distance, mmd, sliced_wasserstein
from probpath.metrics.registry import METRICS, MetricInputs, available, get_metric, header

#: CompareRow's number fields that are not metrics (times, the guidance weight).
_NOT_METRICS = {"train_seconds", "sample_seconds_per_1k", "guidance", "nfe", "train_steps"}


def _number_fields() -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(CompareRow)
        if "float" in str(f.type) or "int" in str(f.type)
    } - _NOT_METRICS


def test_every_compare_metric_is_registered_and_vice_versa():
    """CompareRow's metric fields are exactly the registry's ``in_compare`` names, and a table
    with every metric set shows one column per registered metric, headed by its spec."""
    assert _number_fields() == {s.name for s in TABLE_METRICS}
    row = CompareRow("m", "route", "§1", nfe=10)
    for s in TABLE_METRICS:
        setattr(row, s.name, 1.0)
    result = CompareResult([row], "d", 10, 10, 2, {"nll_unit": "nats/dim"}, [])
    cols, rows = table_cells(result)
    metric_cols = cols[6:]
    assert len(metric_cols) == len(TABLE_METRICS)
    for col, spec in zip(metric_cols, TABLE_METRICS):
        unit = "nats/dim" if spec.needs_density else None
        assert col.startswith(header(spec, unit)), (col, spec.name)
        assert spec.arrow in col
    text = format_markdown(result)
    for s in TABLE_METRICS:
        if not s.needs_density:  # each sample metric's footnote is its description
            assert s.description in text, s.name


def test_evaluate_and_the_cli_help_offer_exactly_the_registry():
    """evaluate's choices are the registry's names; the static help list (no torch import at
    start-up) and info's listing were generated from it."""
    assert evaluation.METRICS is METRICS
    assert METRIC_NAMES == tuple(METRICS)
    for name, spec in METRICS.items():
        assert f"  {name} " in INFO_TEXT and spec.description in INFO_TEXT
    with pytest.raises(ValueError, match="choose from nll, mmd"):
        get_metric("fid")


def test_evaluate_cli_rejects_an_unknown_metric_listing_the_registry(tmp_path):
    from typer.testing import CliRunner

    from probpath.cli.main import app

    out = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--metrics", "fid"])
    assert out.exit_code != 0
    assert ", ".join(METRICS) in out.output


def test_registered_functions_equal_the_library_functions():
    """Each two-sample spec is a thin call of its metric function (same value, exactly)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(60, 3, generator=g), torch.randn(50, 3, generator=g) + 0.3
    inputs = MetricInputs(samples=a, reference=b, bandwidth=0.7, seed=5)
    a64, b64 = a.double(), b.double()
    expected = {
        "mmd": mmd(a64, b64, bandwidth=0.7),
        "swd": sliced_wasserstein(a64, b64, generator=torch.Generator().manual_seed(5)),
        "energy": energy_distance(a64, b64),
        "fd": frechet_distance(a64, b64),
    }
    for name, value in expected.items():
        assert METRICS[name].fn(inputs) == value, name
    got = evaluation.sample_metrics(a, b, bandwidth=0.7, seed=5, which=tuple(expected))
    assert got == expected


def test_nll_spec_is_bits_per_dim_for_discrete_data():
    """NLL per dim: -log p / D nats; with a bin width w the discrete probability of a bin is
    p w^D, so bits/dim = (-log p - D log w) / (D log 2) (metrics.bits_per_dim)."""
    import math

    log_p = torch.tensor([-10.0, -14.0], dtype=torch.float64)
    nats = METRICS["nll"].fn(MetricInputs(log_prob=log_p, dim=4))
    assert nats == pytest.approx(12.0 / 4, rel=1e-15)
    bits = METRICS["nll"].fn(MetricInputs(log_prob=log_p, dim=4, bin_width=2.0))
    assert bits == pytest.approx((12.0 - 4 * math.log(2.0)) / (4 * math.log(2.0)), rel=1e-12)


def test_available_follows_the_needs():
    assert available(labels=False, features=False) == ["nll", "mmd", "swd", "energy", "fd"]
    assert "fd_features" in available(labels=True, features=True)
    assert "class_accuracy" not in available(labels=True, features=True)
    assert "class_accuracy" in available(labels=True, features=True, conditional=True)
    assert "nll" not in available(labels=False, features=False, density=False)


def test_missing_needs_are_named():
    a = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="feature extractor"):
        METRICS["fd_features"].fn(MetricInputs(samples=a, reference=a))
    with pytest.raises(ValueError, match="sample_labels"):
        METRICS["class_accuracy"].fn(MetricInputs(samples=a, reference=a, extractor=object()))
    with pytest.raises(ValueError, match="log-density"):
        evaluation.sample_metrics(a, a, bandwidth=1.0, which=("nll",))


def test_evaluate_scores_feature_metrics_with_the_shipped_classifier(tmp_path):
    """``evaluate --metrics fd_features`` on a digits run finds the shipped classifier (no
    labels needed from the user) and returns a finite positive FD (its value against the
    Gaussian's closed-form behaviour is checked in tests/test_compare.py); per-class metrics
    on an unconditional run are refused with the reason."""
    import json

    from typer.testing import CliRunner

    from probpath.cli.main import app

    run = tmp_path / "run"
    runner = CliRunner()
    fit = runner.invoke(app, ["fit", "gaussian", "--data", "digits", "--out", str(run), "-q"])
    assert fit.exit_code == 0, fit.output
    res = runner.invoke(
        app, ["evaluate", str(run), "--metrics", "fd_features", "--json", "--n", "100", "-q"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert 0 < out["fd_features"] < float("inf")
    bad = runner.invoke(app, ["evaluate", str(run), "--metrics", "class_accuracy", "-q"])
    assert bad.exit_code != 0 and "conditional model" in bad.output
