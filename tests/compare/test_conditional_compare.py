"""Conditional rows of ``compare``: models that accept labels are fitted with them, sample
class-balanced with guidance ("N×2" NFE), and get class accuracy and per-class FD in the
shipped digits classifier's features; ``--guidance-sweep`` draws FD / accuracy against w."""

from __future__ import annotations

import json

import pytest
import torch

from probpath.compare import run_compare
from probpath.compare.evaluation import class_balanced_labels, conditional_plan
from probpath.compare.guidance import SWEEP_WEIGHTS
from probpath.data import load_dataset


def test_class_balanced_labels_differ_by_at_most_one_per_class():
    y = class_balanced_labels(103, 10)
    counts = torch.bincount(y, minlength=10)
    assert counts.sum() == 103 and int(counts.max() - counts.min()) <= 1
    with pytest.raises(ValueError, match="num_classes"):
        class_balanced_labels(5, 0)


def test_unconditional_models_get_no_labels():
    from probpath.catalog import build_model

    test = load_dataset("digits").split(0.2, seed=0)[1]
    plan = conditional_plan(build_model("gaussian", (64,)), test, guidance=2.0)
    assert plan.sample_cond is None and plan.options == {} and plan.guidance is None


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cond")
    result = run_compare(
        ["gaussian", "cfm"], "digits", steps=30, quick=True, out_dir=out, n_eval=100,
        n_nll=2, conditional=True, guidance=1.0, guidance_sweep="cfm", verbose=False,
        figure=False,
    )  # fmt: skip
    return result, out


def test_conditional_rows_have_class_metrics_and_guided_nfe(conditional_run):
    result, _ = conditional_run
    gaussian, cfm = result.rows
    assert cfm.status == "ok", cfm.status
    assert cfm.conditional and cfm.guidance == 1.0
    assert 0.0 <= cfm.class_accuracy <= 1.0 and cfm.fd_per_class > 0
    assert cfm.fd_features is not None  # the overall FD as well
    # CFG: one batched 2B pass per step, printed N×2 (the survey's Table 3 form)
    assert cfm.nfe_text is not None and cfm.nfe_text.endswith("×2")
    assert cfm.nfe == 2 * int(cfm.nfe_text[:-2])
    # a model that cannot take labels stays unconditional: no per-class cells
    assert not gaussian.conditional and gaussian.class_accuracy is None
    assert gaussian.fd_per_class is None and gaussian.fd_features is not None
    # the floor row: training digits with their own labels against the held-out ones
    assert result.floor["fd_per_class"] > 0 and result.floor["class_accuracy"] > 0.9
    md = result.markdown
    assert "class acc. ↑" in md and "FD per class ↓" in md and "×2" in md
    assert "class-balanced" in md


def test_guidance_sweep_writes_the_figure_and_the_values(conditional_run):
    result, out = conditional_run
    sweep = result.settings["guidance_sweep"]
    assert [r["guidance"] for r in sweep] == list(SWEEP_WEIGHTS)
    for r in sweep:
        assert 0.0 <= r["class_accuracy"] <= 1.0 and r["fd_features"] > 0
    assert (out / "fd_vs_guidance.png").stat().st_size > 0
    assert "FD features and class accuracy vs guidance" in (out / "report.html").read_text()
    saved = json.loads((out / "table.json").read_text())
    assert saved["settings"]["guidance_sweep"] == sweep


def test_guidance_sweep_must_name_a_compared_model():
    with pytest.raises(ValueError, match="guidance_sweep"):
        run_compare(["gaussian"], "moons", out_dir=None, guidance_sweep="cfm", verbose=False)


def test_cli_guidance_needs_labelled_data(tmp_path):
    from typer.testing import CliRunner

    from probpath.cli.main import app

    res = CliRunner().invoke(
        app, ["compare", "--models", "gaussian", "--data", "moons", "--guidance", "1",
              "--out", str(tmp_path / "o")],
    )  # fmt: skip
    assert res.exit_code != 0 and "labelled data" in res.output
