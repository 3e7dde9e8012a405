"""The ``probpath`` command: round trips, model options, and exit code 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
from scipy.stats import multivariate_normal
from typer.testing import CliRunner

import probpath
from probpath.catalog import CATALOG
from probpath.cli.main import app
from probpath.cli.options import parse_extra_args, parse_set_options
from probpath.data import load_dataset

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_bad_input(result, *words: str):
    """Exit code 2, one line on stderr starting with 'error:', no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.startswith("error:") and "\n" not in err, err
    assert "Traceback" not in result.output
    for w in words:
        assert w.lower() in err.lower(), (w, err)


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "g"
    res = invoke("fit", "gaussian", "--data", "moons", "--n", "300", "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_info_lists_models_paths_and_data():
    res = invoke("info")
    assert res.exit_code == 0, res.output
    for e in CATALOG:
        assert e.name in res.stdout
    assert "moons" in res.stdout and "digits" in res.stdout
    assert "Samplers" in res.stdout and "Paths" in res.stdout


def test_fit_writes_a_loadable_run_dir(gaussian_run):
    for f in ("config.json", "model.safetensors", "run.json"):
        assert (gaussian_run / f).is_file()
    assert not any(p.name.endswith(".partial") for p in gaussian_run.parent.iterdir())
    record = json.loads((gaussian_run / "run.json").read_text())
    assert record["model"] == "gaussian" and record["data"] == "moons" and record["n"] == 300


def test_sample_npy_png_and_seeded(gaussian_run, tmp_path):
    a, b, png = tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "s.png"
    assert invoke("sample", gaussian_run, "--n", "50", "--seed", "3", "--out", a).exit_code == 0
    assert invoke("sample", gaussian_run, "--n", "50", "--seed", "3", "--out", b).exit_code == 0
    x = np.load(a)
    assert x.shape == (50, 2) and np.isfinite(x).all()
    np.testing.assert_array_equal(x, np.load(b))
    assert invoke("sample", gaussian_run, "--n", "50", "--out", png).exit_code == 0
    assert matplotlib.image.imread(png).ndim == 3


def test_evaluate_held_out_nll_matches_closed_form(gaussian_run):
    res = invoke("evaluate", gaussian_run, "--metrics", "nll,mmd,swd", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # fit kept 10 % of load_dataset("moons", n=300, seed=0) aside, split with seed 0
    train, test = load_dataset("moons", n=300, seed=0).split(0.1, seed=0)
    xt, xs = train.x.double().numpy(), test.x.double().numpy()
    mu, cov = xt.mean(0), np.cov(xt.T, bias=True) + 1e-6 * np.eye(2)
    expected = -multivariate_normal(mu, cov).logpdf(xs).mean() / 2
    assert out["n"] == len(test)
    assert out["nll"]["value"] == pytest.approx(expected, rel=1e-9)
    assert out["nll"]["unit"] == "nats/dim" and out["nll"]["kind"] == "exact"
    assert out["swd"] >= 0 and "mmd" in out
    table = invoke("evaluate", gaussian_run, "--metrics", "nll")
    assert table.exit_code == 0 and "| NLL |" in table.stdout


def test_vector_model_on_images_samples_come_back_as_images(tmp_path):
    out = tmp_path / "gd"
    res = invoke("fit", "gaussian", "--data", "digits", "--n", "300", "--out", out)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "run.json").read_text())["space"]["flatten"] is True
    assert invoke("sample", out, "--n", "7", "--out", tmp_path / "d.npy").exit_code == 0
    x = np.load(tmp_path / "d.npy")
    assert x.shape == (7, 1, 8, 8)
    assert -4 < x.mean() < 20  # back in the 0..16 pixel scale, not [-1, 1]
    ev = invoke("evaluate", out, "--metrics", "nll", "--json")
    assert json.loads(ev.stdout)["nll"]["unit"] == "bits/dim"


def test_model_options_as_flags_and_set(tmp_path):
    out = tmp_path / "diag"
    res = invoke(
        "fit", "gaussian", "--data", "moons", "--n", "100", "--out", out,
        "--covariance-type", "diag", "--set", "reg_covar=0.001",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["covariance_type"] == "diag" and config["reg_covar"] == 0.001


@pytest.mark.skipif("gmm" not in CATALOG, reason="gmm not in the catalog yet")
def test_fit_gmm_n_components(tmp_path):
    out = tmp_path / "gmm"
    res = invoke("fit", "gmm", "--data", "moons", "--n", "500", "--n-components", "8", "--out", out)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["config"]["n_components"] == 8


def test_fit_neural_model_steps(tmp_path):
    neural = [e for e in CATALOG if not e.cls.capabilities.estimator and e.accepts((2,))]
    if not neural:
        pytest.skip("no neural vector model in the catalog yet")
    name = "realnvp" if "realnvp" in CATALOG else neural[0].name
    out = tmp_path / "nn"
    res = invoke("fit", name, "--data", "moons", "--n", "200", "--steps", "3", "--quick",
                 "--batch-size", "32", "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "3 steps" in res.stdout
    for f in ("config.json", "model.safetensors", "run.json"):
        assert (out / f).is_file()
    assert invoke("sample", out, "--n", "4", "--out", tmp_path / "s.npy").exit_code == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 2)
    if (out / "ema.safetensors").is_file():  # the EMA weights load on request
        res = invoke("sample", out, "--n", "4", "--weights", "ema", "--out", tmp_path / "e.npy")
        assert res.exit_code == 0, res.output
    ev = invoke("evaluate", out, "--metrics", "swd,energy", "--n", "20", "--json")
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["n"] == 20


def test_fit_resume_continues_to_the_new_total(tmp_path):
    """A 3-step run resumed with --steps 6 continues from its checkpoint: the log goes on
    from step 3 to 6 in the same directory (bit-exact resume is tested on the Trainer)."""
    args = ("fit", "realnvp", "--data", "moons", "--n", "200", "--quick", "--batch-size", "32")
    assert invoke(*args, "--steps", "3", "--out", tmp_path / "a").exit_code == 0
    res = invoke(*args, "--steps", "6", "--resume", tmp_path / "a")
    assert res.exit_code == 0, res.output
    assert "6 steps" in res.stdout
    log = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3, 6]


@pytest.mark.skipif("cfm" not in CATALOG, reason="cfm not in the catalog yet")
def test_sample_trajectories_plot_for_path_models(tmp_path, gaussian_run):
    out = tmp_path / "cfm"
    args = ("fit", "cfm", "--data", "moons", "--n", "200", "--steps", "3", "--quick")
    assert invoke(*args, "--out", out).exit_code == 0
    res = invoke("sample", out, "--n", "16", "--steps", "4", "--trajectories", "--out",
                 tmp_path / "t.png")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert matplotlib.image.imread(tmp_path / "t.png").shape[:2] == (400, 400)
    res = invoke("sample", gaussian_run, "--trajectories", "--out", tmp_path / "g.png")
    assert_bad_input(res, "--trajectories")
    assert not (tmp_path / "g.png").exists()


def test_resume_without_checkpoint_is_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    res = invoke("fit", "realnvp", "--data", "moons", "--resume", tmp_path / "empty")
    assert_bad_input(res, "--resume")


@pytest.mark.skipif("ddpm" not in CATALOG, reason="ddpm not in the catalog yet")
def test_sample_passes_sampler_options_to_path_models(tmp_path):
    out = tmp_path / "ddpm"
    res = invoke("fit", "ddpm", "--data", "moons", "--n", "200", "--steps", "2", "--out", out,
                 "--set", 'network={"hidden": [16, 16]}')  # fmt: skip
    assert res.exit_code == 0, res.output
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    res = invoke("sample", out, "--n", "6", "--sampler", "euler", "--steps", "3", "--out", a)
    assert res.exit_code == 0, res.output
    assert np.load(a).shape == (6, 2)
    # a different sampler gives different samples from the same noise seed
    res = invoke("sample", out, "--n", "6", "--sampler", "heun", "--steps", "3", "--out", b)
    assert res.exit_code == 0, res.output
    assert not np.allclose(np.load(a), np.load(b))
    assert_bad_input(invoke("sample", out, "--sampler", "nosuch", "--out", b), "sampler")


@pytest.mark.parametrize(
    "args, words",
    [
        (["fit", "no-such-model", "--data", "moons"], ["unknown model"]),
        (["fit", "gaussian", "--data", "no-such-data"], ["unknown data set"]),
        (["fit", "gaussian", "--data", "moons", "--steps", "0"], ["--steps"]),
        (["fit", "gaussian", "--data", "moons", "--steps", "ten"], ["--steps"]),
        (["fit", "gaussian", "--data", "moons", "--lr", "-1"], ["--lr"]),
        (["fit", "gaussian", "--data", "moons", "--holdout", "1.5"], ["--holdout"]),
        (["fit", "gaussian", "--data", "moons", "--set", "reg_covar"], ["key=value"]),
        (["fit", "gaussian", "--data", "moons", "--set", "=3"], ["key"]),
        (["fit", "gaussian", "--data", "moons", "--no-such-option", "1"], ["no_such_option"]),
        (["fit", "gaussian", "--data", "moons", "--reg-covar", "-1"], ["reg_covar"]),
        (["fit", "gaussian", "--data", "moons", "stray"], ["unexpected argument"]),
        (["fit", "gaussian", "--data", "moons", "--device", "tpu"], ["device"]),
        (["compare", "--models", "no-such-model", "--data", "moons"], ["unknown model"]),
        (["compare", "--models", ",", "--data", "moons"], ["--models"]),
        (["compare", "--models", "gaussian", "--data", "moons", "--steps", "0"], ["--steps"]),
        (["compare", "--models", "gaussian", "--data", "no-such-data"], ["unknown data set"]),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(args, words, tmp_path):
    out = tmp_path / "out"
    assert_bad_input(invoke(*args, "--out", out), *words)
    assert not out.exists()


def test_unreadable_data_file(tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"this is not an array")
    out = tmp_path / "out"
    assert_bad_input(invoke("fit", "gaussian", "--data", bad, "--out", out), "bad.npy")
    assert not out.exists()


def test_existing_out_needs_overwrite(gaussian_run, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_bad_input(invoke("fit", "gaussian", "--data", "moons", "--out", out), "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    # --overwrite replaces only a probpath run (issue #13): this folder is the user's
    res = invoke("fit", "gaussian", "--data", "moons", "--n", "50", "--out", out, "--overwrite")
    assert_bad_input(res, "not a probpath run")
    assert (out / "keep.txt").read_text() == "mine"
    run = tmp_path / "run"
    assert invoke("fit", "gaussian", "--data", "moons", "--n", "50", "--out", run).exit_code == 0
    res = invoke("fit", "gaussian", "--data", "moons", "--n", "60", "--out", run, "--overwrite")
    assert res.exit_code == 0, res.output
    assert json.loads((run / "run.json").read_text())["n"] == 60


def test_sample_and_evaluate_bad_input(gaussian_run, tmp_path):
    f = tmp_path / "s.npy"
    assert_bad_input(invoke("sample", tmp_path / "missing", "--out", f), "does not exist")
    assert_bad_input(invoke("sample", gaussian_run, "--out", tmp_path / "s.txt"), ".npy")
    assert_bad_input(invoke("sample", gaussian_run, "--n", "0", "--out", f), "--n")
    assert_bad_input(invoke("sample", gaussian_run, "--sampler", "euler", "--out", f), "sampler")
    assert_bad_input(invoke("sample", gaussian_run, "--weights", "best", "--out", f), "weights")
    assert not f.exists()
    assert_bad_input(invoke("evaluate", gaussian_run, "--metrics", "fid"), "--metrics")
    assert_bad_input(invoke("evaluate", gaussian_run, "--data", "digits"), "shape")
    assert_bad_input(invoke("sample"), "missing argument")


def test_compare_command_prints_and_writes_the_table(tmp_path):
    out = tmp_path / "cmp"
    res = invoke("compare", "--models", "gaussian", "--data", "moons", "--n", "300",
                 "--n-eval", "40", "--out", out, "--device", "cpu")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "| gaussian |" in res.stdout and "Gaussian kernel" in res.stdout
    assert (out / "table.md").read_text().strip() == res.stdout.strip()
    assert "[1/1] gaussian" in res.stderr


def test_option_parsing():
    assert parse_extra_args(["--n-components", "8", "--hidden=[64,64]", "--flag", "--no-bias"]) == {
        "n_components": 8,
        "hidden": [64, 64],
        "flag": True,
        "bias": False,
    }
    assert parse_extra_args(["--act", "silu", "--lr-scale", "-0.5"]) == {
        "act": "silu",
        "lr_scale": -0.5,
    }
    assert parse_set_options(["a=1", "b=x=y", 'c="2"']) == {"a": 1, "b": "x=y", "c": "2"}
    with pytest.raises(ValueError, match="twice"):
        parse_set_options(["a=1", "a=2"])
    with pytest.raises(ValueError, match="not an option name"):
        parse_extra_args(["--1x", "2"])


def test_python_m_probpath_entry_point():
    res = subprocess.run(
        [sys.executable, "-m", "probpath", "fit", "no-such-model"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: unknown model")


@pytest.mark.skipif("ddpm" not in CATALOG, reason="ddpm not in the catalog yet")
def test_sample_clip_x0_keeps_samples_in_the_data_range(tmp_path, gaussian_run):
    """Clipping x0_hat to the run's data range (digits: 0..16 pixel units; the default on
    bounded data) keeps samples in range; an untrained eps-network sampled by an ODE solver
    leaves that range with --no-clip-x0."""
    out = tmp_path / "ddpm"
    res = invoke("fit", "ddpm", "--data", "digits", "--n", "64", "--steps", "1", "--out", out,
                 "--set", 'network={"hidden": [16]}', "--set", "num_steps=100")  # fmt: skip
    assert res.exit_code == 0, res.output
    args = ("sample", out, "--n", "32", "--sampler", "dpmpp_2m", "--steps", "5", "--out")
    assert invoke(*args, tmp_path / "free.npy", "--no-clip-x0").exit_code == 0
    res = invoke(*args, tmp_path / "clip.npy")  # bounded data: clipped by default
    assert res.exit_code == 0, res.output
    free, clipped = np.load(tmp_path / "free.npy"), np.load(tmp_path / "clip.npy")
    assert free.shape == clipped.shape == (32, 1, 8, 8)
    assert free.min() < 0 or free.max() > 16
    assert clipped.min() >= -1e-4 and clipped.max() <= 16 + 1e-4
    # a run without a known data range (moons) cannot be clipped: clear error, no file
    res = invoke("sample", gaussian_run, "--clip-x0", "--out", tmp_path / "g.npy")
    assert_bad_input(res, "--clip-x0")
    assert not (tmp_path / "g.npy").exists()


MAPS = [e.name for e in CATALOG if e.cls.__module__.startswith("probpath.maps")]


@pytest.mark.parametrize("name", MAPS)
def test_few_step_maps_sample_with_steps(tmp_path, name):
    """``probpath sample RUN --steps K`` works for every few-step map: maps with a steps option
    take any K (1 here); maps with a count fixed at construction (the 1-step distillation,
    consistency-FM's segments) take their own count and refuse another with exit 2 naming it.
    ``--sampler`` is refused: a map has its own update rule."""
    run = tmp_path / "run"
    res = invoke("fit", name, "--data", "moons", "--n", "200", "--steps", "2", "--out", run)
    assert res.exit_code == 0, res.output
    fixed = probpath.load(run).fixed_nfe
    k = 1 if fixed is None else fixed
    res = invoke("sample", run, "--n", "8", "--steps", str(k), "--out", tmp_path / "a.png")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a.png").is_file()
    if fixed is not None:
        res = invoke(
            "sample", run, "--n", "8", "--steps", str(fixed + 1), "--out", tmp_path / "b.png"
        )
        assert_bad_input(res, f"takes {fixed} network evaluation", "steps")
        assert not (tmp_path / "b.png").exists()
    res = invoke("sample", run, "--n", "8", "--sampler", "heun", "--out", tmp_path / "c.png")
    assert_bad_input(res, "few-step map", "--sampler")
