"""Issue #13, causes 4 and 5 in the CLI: one error boundary, nothing deleted that is not ours.

Cause 5: every failure class of the issue (RuntimeError, KeyError, RecursionError,
OverflowError, MemoryError, NotImplementedError) ends as exit 2 and one ``error:`` line; an
unexpected one as exit 1 and a one-line "internal error" (``PROBPATH_DEBUG=1`` re-raises);
warnings are not mixed with the error line; options are checked before work starts.
Cause 4: ``--overwrite`` replaces only a run, a fresh ``fit`` keeps an interrupted
``.NAME.partial``, ``--resume`` refuses another model / data / options and a different
``--out``.
"""

from __future__ import annotations

import json
import warnings

import pytest
from typer.testing import CliRunner

import probpath.cli.fit as fit_cmd
from probpath.cli.main import app

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def one_line(result, code: int, *words: str) -> str:
    """``code``, and stderr is exactly one ``error:`` line holding ``words``, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.startswith("error:") and "\n" not in err, err
    assert "Traceback" not in result.output
    for w in words:
        assert w.lower() in err.lower(), (w, err)
    return err


@pytest.fixture(scope="module")
def cfm_run(tmp_path_factory):
    """A finished neural run with checkpoints (cfm, quick, 3 steps, moons)."""
    out = tmp_path_factory.mktemp("cfm") / "run"
    res = invoke("fit", "cfm", "--data", "moons", "--n", "100", "--quick", "--steps", "3",
                 "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def _copy(run, dst):
    dst.mkdir()
    for f in run.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


# ----------------------------------------------------------------------------- cause 5
def test_unknown_sampler_on_a_cfm_run_is_one_line(cfm_run, tmp_path):
    """Was a KeyError traceback: now refused before sampling, listing the valid names."""
    res = invoke("sample", cfm_run, "--sampler", "nosuch", "--out", tmp_path / "s.npy")
    one_line(res, 2, "'nosuch'", "euler")
    assert not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize("where", ["config.json", "run.json"])
def test_deep_json_in_run_files_is_one_line(cfm_run, tmp_path, where):
    run = _copy(cfm_run, tmp_path / "run")
    (run / where).write_text("[" * 100_000 + "]" * 100_000)
    one_line(invoke("sample", run, "--out", tmp_path / "s.npy"), 2, "nested too deeply")


def test_deep_json_and_invalid_json_in_set_are_one_line(tmp_path):
    deep = "hidden=" + "[" * 100_000 + "]" * 100_000
    one_line(invoke("fit", "cfm", "--data", "moons", "--set", deep, "--out", tmp_path / "a"),
             2, "nested too deeply")  # fmt: skip
    res = invoke("fit", "cfm", "--data", "moons", "--set", "network={bad", "--out", tmp_path / "b")
    one_line(res, 2, "not valid JSON")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("seed", ["1e999", str(10**30), "-1"])
def test_seed_out_of_range_is_one_line(tmp_path, seed):
    """10**30 overflowed inside torch.manual_seed; 1e999 is not an integer at all."""
    res = invoke("fit", "gaussian", "--data", "moons", "--seed", seed, "--out", tmp_path / "r")
    one_line(res, 2, "--seed")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "exc, words",
    [
        (RuntimeError("CUDA error: device-side assert"), ["device-side assert"]),
        (KeyError("nosuch"), ["'nosuch'"]),
        (RecursionError("maximum recursion depth exceeded"), ["nested too deeply"]),
        (OverflowError("int too large"), ["too large"]),
        (MemoryError(), ["out of memory"]),
        (NotImplementedError("GAN has no log_prob"), ["no log_prob"]),
    ],
)
def test_each_failure_class_maps_to_exit_2_and_one_line(tmp_path, monkeypatch, exc, words):
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(fit_cmd, "_fit_run", boom)
    res = invoke("fit", "gaussian", "--data", "moons", "--n", "50", "--out", tmp_path / "r")
    one_line(res, 2, *words)


def test_unexpected_error_is_internal_exit_1_and_debug_shows_it(tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'x'")

    monkeypatch.setattr(fit_cmd, "_fit_run", bug)
    args = ("fit", "gaussian", "--data", "moons", "--n", "50", "--out", tmp_path / "r")
    one_line(invoke(*args), 1, "internal error", "AttributeError", "PROBPATH_DEBUG=1")
    res = invoke(*args, env={"PROBPATH_DEBUG": "1"})
    assert isinstance(res.exception, AttributeError)  # re-raised: the traceback is shown


def test_warnings_are_not_mixed_with_the_error_line(tmp_path, monkeypatch):
    def warn_then_fail(*args, **kwargs):
        warnings.warn("batch_size exceeds the rows", UserWarning, stacklevel=1)
        raise ValueError("the data is too small; pass more samples")

    monkeypatch.setattr(fit_cmd, "_fit_run", warn_then_fail)
    res = invoke("fit", "gaussian", "--data", "moons", "--n", "50", "--out", tmp_path / "r")
    err = one_line(res, 2, "too small")
    assert "batch_size" not in err


def test_estimator_options_are_checked_before_any_work(tmp_path, monkeypatch):
    """--n-components 0 used to fail inside fit (exit 1); nothing may be written either."""
    monkeypatch.setattr(fit_cmd, "_fit_run", lambda *a, **k: pytest.fail("work started"))
    res = invoke("fit", "gmm", "--data", "moons", "--n-components", "0", "--out", tmp_path / "r")
    one_line(res, 2, "n_components")
    assert not any(tmp_path.iterdir())


def test_unwritable_out_is_refused_before_the_data_is_read(tmp_path, monkeypatch):
    """--out under a regular file cannot be created; found before the data is loaded."""
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(fit_cmd, "load_data", lambda *a, **k: pytest.fail("data was read"))
    res = invoke("fit", "gaussian", "--data", "moons", "--out", tmp_path / "file" / "run")
    one_line(res, 2, "cannot write")


# ----------------------------------------------------------------------------- cause 4
def test_overwrite_replaces_only_a_probpath_run(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    res = invoke("fit", "gaussian", "--data", "moons", "--n", "50", "--out", out, "--overwrite")
    one_line(res, 2, "not a probpath run")
    assert (out / "holiday.jpg").read_bytes() == b"precious"


def test_fresh_fit_keeps_an_interrupted_partial(cfm_run, tmp_path, monkeypatch):
    partial = _copy(cfm_run, tmp_path / ".run.partial")
    before = sorted(p.name for p in partial.iterdir())
    monkeypatch.setattr(fit_cmd, "_fit_run", lambda *a, **k: pytest.fail("work started"))
    res = invoke("fit", "cfm", "--data", "moons", "--quick", "--out", tmp_path / "run")
    one_line(res, 2, f"--resume {partial}", "rm -r")
    assert sorted(p.name for p in partial.iterdir()) == before


@pytest.mark.parametrize(
    "change, words",
    [
        (["ddpm", "--data", "moons", "--n", "100", "--quick"], ["not 'ddpm'"]),
        (["cfm", "--data", "circles", "--n", "100", "--quick"], ["other data"]),
        (["cfm", "--data", "moons", "--n", "100", "--quick", "--seed", "1"], ["other data"]),
        (["cfm", "--data", "moons", "--n", "100", "--quick", "--sigma-min", "0.1"],
         ["options"]),
    ],
)  # fmt: skip
def test_resume_refuses_another_model_data_or_options(cfm_run, tmp_path, monkeypatch, change,
                                                       words):  # fmt: skip
    run = _copy(cfm_run, tmp_path / "run")
    monkeypatch.setattr(fit_cmd, "_fit_run", lambda *a, **k: pytest.fail("work started"))
    res = invoke("fit", *change, "--steps", "6", "--resume", run)
    one_line(res, 2, *words)


def test_resume_anyway_continues_on_other_data_with_a_warning(cfm_run, tmp_path):
    """Told on purpose (fine-tuning on new data): a warning line, the run continues, and the
    record now names the data it was last trained on."""
    run = _copy(cfm_run, tmp_path / "run")
    before = json.loads((run / "run.json").read_text())["fingerprint"]
    res = invoke("fit", "cfm", "--data", "circles", "--n", "100", "--quick", "--steps", "5",
                 "--resume", run, "--resume-anyway")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "warning:" in res.stderr and "other data" in res.stderr
    record = json.loads((run / "run.json").read_text())
    assert record["fit"]["steps"] == 5 and record["fingerprint"] != before
    alone = invoke("fit", "cfm", "--data", "moons", "--resume-anyway")
    one_line(alone, 2, "--resume-anyway goes with --resume")


def test_resume_with_a_different_out_is_refused(cfm_run, tmp_path):
    run = _copy(cfm_run, tmp_path / "run")
    res = invoke("fit", "cfm", "--data", "moons", "--n", "100", "--quick", "--steps", "6",
                 "--resume", run, "--out", tmp_path / "elsewhere")  # fmt: skip
    one_line(res, 2, "--resume continues")
    assert not (tmp_path / "elsewhere").exists()


def test_resume_with_the_same_inputs_continues(cfm_run, tmp_path):
    run = _copy(cfm_run, tmp_path / "run")
    res = invoke("fit", "cfm", "--data", "moons", "--n", "100", "--quick", "--steps", "5",
                 "--resume", run)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads((run / "run.json").read_text())["fit"]["steps"] == 5


# ----------------------------------------------------------------------------- causes 1, 3 (CLI)
def test_sampler_steps_and_sample_count_are_bounded_before_sampling(cfm_run, tmp_path):
    """--steps 1e11 tried to allocate an 800 GB time grid; --n 10**9 x 2 floats is 8 GB."""
    out = tmp_path / "s.npy"
    one_line(invoke("sample", cfm_run, "--steps", 10**11, "--out", out), 2, "--steps", "100000")
    one_line(invoke("sample", cfm_run, "--n", 10**9, "--out", out), 2, "--n x sample shape")
    assert not out.exists()


@pytest.mark.skipif(not __import__("os").path.exists("/dev/zero"), reason="needs /dev/zero")
def test_data_path_inside_run_json_is_untrusted(cfm_run, tmp_path):
    """``evaluate RUN`` reads the data path stored in run.json: a symlink to a device there
    is refused by its file type, never read."""
    run = _copy(cfm_run, tmp_path / "run")
    link = tmp_path / "train-idx3-ubyte"
    link.symlink_to("/dev/zero")
    record = json.loads((run / "run.json").read_text())
    record["data"] = str(link)
    (run / "run.json").write_text(json.dumps(record))
    one_line(invoke("evaluate", run), 2, "not a regular file")


def test_max_params_flag_sets_the_bound(cfm_run, tmp_path):
    """The quick cfm has ~3.8e4 weights: --max-params 1000 refuses it, the default loads it."""
    out = tmp_path / "s.npy"
    one_line(invoke("sample", cfm_run, "--n", 10, "--max-params", 1000, "--out", out), 2,
             "more than 1000", "--max-params")  # fmt: skip
    assert invoke("sample", cfm_run, "--n", 10, "--out", out).exit_code == 0
    assert out.is_file()
