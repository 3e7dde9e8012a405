"""Mean ± sd over training seeds: the closed forms, and compare --seeds on a fixed split."""

from __future__ import annotations

import math

import pytest

from probpath.compare.seeds import aggregate_seeds, run_compare_seeds
from probpath.compare.table import CompareResult, CompareRow
from probpath.metrics.seeds import parse_seeds, summarise


def test_summary_is_the_sample_mean_and_sd():
    """values 1, 2, 4: mean 7/3, sample variance ((4/3)² + (1/3)² + (5/3)²) / 2 = 7/3."""
    s = summarise([1.0, 2.0, 4.0])
    assert s.mean == pytest.approx(7 / 3, rel=1e-15)
    assert s.sd == pytest.approx(math.sqrt(7 / 3), rel=1e-15)
    assert s.n == 3 and s.spread_ratio == 4.0 and str(s) == "2.333 ± 1.5"
    nan = summarise([1.0, None, float("nan"), 3.0])  # missing values leave both out
    assert (nan.mean, nan.n) == (2.0, 2) and len(nan.values) == 4
    assert math.isnan(summarise([5.0]).sd)


@pytest.mark.parametrize("bad", ["0,x", "1,1", "-1,2", ""])
def test_parse_seeds_refuses_bad_lists(bad):
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds(bad, minimum=2)
    assert parse_seeds("0, 1,2") == [0, 1, 2]


def _result(swd: float, status: str = "ok") -> CompareResult:
    row = CompareRow("m", "r", "§", swd=swd, mmd=2 * swd, train_seconds=1.0, status=status)
    return CompareResult([row], "d", 5, 5, 2, {"nll_unit": "nats/dim"}, [])


def test_aggregate_takes_mean_and_sd_per_metric_and_skips_failed_seeds():
    agg = aggregate_seeds([_result(1.0), _result(2.0), _result(4.0)], [0, 1, 2])
    row = agg.rows[0]
    assert row.swd == pytest.approx(7 / 3) and row.mmd == pytest.approx(14 / 3)
    assert agg.spread["m"]["swd"] == pytest.approx(math.sqrt(7 / 3))
    assert agg.settings["seeds"] == [0, 1, 2]
    agg2 = aggregate_seeds([_result(1.0), _result(9.0, "failed: x"), _result(3.0)], [0, 1, 2])
    assert agg2.rows[0].swd == 2.0 and "2/3 seeds" in agg2.rows[0].sampler


def test_compare_seeds_keeps_the_split_and_varies_only_training(tmp_path):
    """Two training seeds on the split of seed 0: the noise floor (data vs data, no model)
    is identical across seeds, the estimator's scores differ (its fit draws with the seed),
    and the table cell is "mean ± sd"."""
    res = run_compare_seeds(
        ["gmm"], "moons", [0, 1], split_seed=0, out_dir=tmp_path, n_eval=200, verbose=False,
        figure=False,
    )  # fmt: skip
    per_seed = [tmp_path / f"seed_{s}" / "table.json" for s in (0, 1)]
    assert all(p.exists() for p in per_seed)
    import json

    tables = [json.loads(p.read_text()) for p in per_seed]
    assert tables[0]["noise_floor"] == tables[1]["noise_floor"]
    values = [t["rows"][0]["swd"] for t in tables]
    assert values[0] != values[1]  # the training seed still changes the model
    assert res.rows[0].swd == pytest.approx(sum(values) / 2, rel=1e-12)
    assert res.spread["gmm"]["swd"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert " ± " in res.markdown and (tmp_path / "table.md").exists()


@pytest.mark.parametrize("seeds", ["0", "0,0", "a,b"])
def test_compare_cli_refuses_bad_seeds_before_training(seeds, tmp_path):
    from typer.testing import CliRunner

    from probpath.cli.main import app

    res = CliRunner().invoke(
        app, ["compare", "--models", "gaussian", "--data", "moons", "--seeds", seeds,
              "--out", str(tmp_path / "o")],
    )  # fmt: skip
    assert res.exit_code != 0 and "--seeds" in res.output
    assert not (tmp_path / "o").exists()
