"""CLI: ``fit --conditional``, ``sample --class --guidance``, ``restore`` (thin wrappers)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from probpath.cli.main import app
from probpath.data import load_dataset

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond")
    net = '{"hidden":[16]}'
    r1 = invoke(
        "fit",
        "cfm",
        "--data",
        "gmm",
        "--conditional",
        "--steps",
        "5",
        "--out",
        root / "c",
        "--set",
        f"network={net}",
        "--device",
        "cpu",
    )
    assert r1.exit_code == 0, r1.output
    r2 = invoke(
        "fit",
        "ddpm",
        "--data",
        "digits",
        "--steps",
        "5",
        "--out",
        root / "d",
        "--set",
        f"network={net}",
        "--set",
        "steps=4",
        "--set",
        "sampler=ddim",
        "--device",
        "cpu",
    )
    assert r2.exit_code == 0, r2.output
    x = load_dataset("digits").x[:2].numpy()
    np.save(root / "dig.npy", x)
    return root


def test_conditional_fit_and_guided_sample(runs):
    out = runs / "s.npy"
    r = invoke("sample", runs / "c", "--class", "2", "--guidance", "1.5", "--n", "8", "--out", out)
    assert r.exit_code == 0, r.output
    assert np.load(out).shape == (8, 2)


def test_guidance_on_an_unconditional_run_is_bad_input(runs):
    r = invoke("sample", runs / "d", "--guidance", "1", "--n", "2", "--out", runs / "x.npy")
    assert r.exit_code == 2 and "--guidance" in r.output


def test_conditional_needs_labels(runs):
    r = invoke(
        "fit", "cfm", "--data", "moons", "--conditional", "--steps", "1", "--out", runs / "m"
    )
    assert r.exit_code == 2 and "labels" in r.output


@pytest.mark.parametrize(
    "task, method, extra",
    [("inpaint", "ddnm", []), ("superres", "pigdm", []), ("denoise", "dps", ["--sigma-y", "2"])],
)
def test_restore(runs, task, method, extra):
    out = runs / f"{task}.npy"
    r = invoke(
        "restore",
        runs / "d",
        "--task",
        task,
        "--method",
        method,
        "--input",
        runs / "dig.npy",
        "--out",
        out,
        "--steps",
        "3",
        *extra,
    )
    assert r.exit_code == 0, r.output
    assert np.load(out).shape == (2, 1, 8, 8)


def test_restore_bad_input(runs):
    r = invoke(
        "restore",
        runs / "d",
        "--task",
        "colorize",
        "--input",
        runs / "dig.npy",
        "--out",
        runs / "o.npy",
    )
    assert r.exit_code == 2 and "--task" in r.output
    r = invoke(
        "restore",
        runs / "d",
        "--task",
        "denoise",
        "--input",
        runs / "dig.npy",
        "--out",
        runs / "o.npy",
    )
    assert r.exit_code == 2 and "sigma-y" in r.output
    np.save(runs / "bad.npy", np.zeros((1, 5, 5), dtype=np.float32))
    r = invoke(
        "restore",
        runs / "d",
        "--task",
        "inpaint",
        "--input",
        runs / "bad.npy",
        "--out",
        runs / "o.npy",
    )
    assert r.exit_code == 2 and "shape" in r.output
