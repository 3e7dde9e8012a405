"""Progress output in each mode, captured: plain lines every 10 % or 30 s in a log, a tqdm
bar on a terminal, nothing when quiet; ``compare`` reports each model's phases, ``evaluate``
says what it scored, ``--quiet`` silences the CLI."""

from __future__ import annotations

import io
import re
import time

import pytest
from typer.testing import CliRunner

from probpath.cli.main import app
from probpath.compare import run_compare
from probpath.data import load_dataset
from probpath.training.progress import Progress, phase, resolve_mode


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_every_tenth_with_eta():
    out, clock = io.StringIO(), FakeClock()
    p = Progress(200, "train", mode="lines", file=out, clock=clock)
    for _ in range(200):
        clock.now += 0.5  # 100 s in all: never 30 s between two tenths (10 s each)
        p.update()
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # at 10 %, 20 %, ..., 100 %; close adds nothing new
    assert lines[0] == "train: 20/200 steps (10 %), 10 s, ETA 1 min 30 s"  # 10 s per tenth
    assert lines[-1] == "train: 200/200 steps (100 %), 1 min 40 s"


def test_lines_every_30_seconds_when_slow():
    out, clock = io.StringIO(), FakeClock()
    p = Progress(1000, "train", mode="lines", file=out, clock=clock)
    for _ in range(20):
        clock.now += 10.0  # 20 steps in 200 s: far below a tenth; a line every 30 s
        p.update()
    assert out.getvalue().count("\n") == 200 // 30  # at 30, 60, ..., 180 s


def test_a_time_budget_drives_the_fraction():
    out, clock = io.StringIO(), FakeClock()
    p = Progress(None, "train", mode="lines", file=out, clock=clock)
    clock.now = 5.0
    p.update(7, fraction=0.5)
    assert out.getvalue() == "train: 7 steps (50 %), 5 s, ETA 5 s\n"


def test_bar_off_and_auto():
    bar = Tty()
    p = Progress(3, "fit", mode="auto", file=bar)
    assert p.mode == "bar"
    for _ in range(3):
        p.update()
    p.close()
    assert "fit" in bar.getvalue() and "3/3" in bar.getvalue()
    quiet = io.StringIO()
    p = Progress(3, "fit", mode="off", file=quiet)
    p.update(3)
    p.close()
    assert quiet.getvalue() == ""
    assert resolve_mode("auto", io.StringIO()) == "lines"
    assert resolve_mode("on") == "bar"
    with pytest.raises(ValueError, match="progress"):
        resolve_mode("loud")


def test_phase_heartbeat():
    out = io.StringIO()
    with phase("sample ddpm", mode="lines", file=out, interval=0.05):
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert lines[0] == "sample ddpm ..." and lines[-1].startswith("sample ddpm: done in")
    assert any("still running" in x for x in lines[1:-1])
    quiet = io.StringIO()
    with phase("x", mode="off", file=quiet):
        pass
    with phase("x", mode="lines", file=quiet, announce_after=5.0):
        pass  # ended before it was worth a line
    assert quiet.getvalue() == ""


def test_compare_reports_each_phase(capsys):
    data = load_dataset("moons", n=300, seed=0)
    run_compare(["gaussian", "cfm"], data, steps=20, out_dir=None, n_eval=40, quick=True,
                device="cpu", progress="lines")  # fmt: skip
    err = capsys.readouterr().err
    assert re.search(r"^\[2/2\] cfm train: 20/20 steps \(100 %\)", err, re.M), err
    for what in ("[1/2] gaussian sample (40) ...", "[2/2] cfm score (NLL on"):
        assert what in err, err
    assert re.search(r"^\[1/2\] gaussian .*ETA", err, re.M), err
    run_compare(["gaussian"], data, out_dir=None, n_eval=40, verbose=False)
    assert capsys.readouterr().err == ""


def test_cli_quiet_and_evaluate_says_what_it_scored(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    args = ["fit", "cfm", "--data", "moons", "--n", "300", "--steps", "20", "--quick"]
    res = runner.invoke(app, [*args, "--out", str(run), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "train cfm" not in res.output
    loud = runner.invoke(app, [*args, "--out", str(tmp_path / "loud")])
    assert "train cfm: 20/20 steps (100 %)" in loud.output
    res = runner.invoke(app, ["evaluate", str(run), "--metrics", "swd", "--quiet"])
    assert res.exit_code == 0, res.output
    # moons n=300 with fit's default --holdout 0.1: 30 held-out points
    assert "30 points of the held-out 10% of moons that fit kept aside" in res.output
    same = runner.invoke(app, ["evaluate", str(run), "--data", "moons", "--metrics", "swd"])
    assert "held-out 10% of moons" in same.output  # naming the run's data: still held out
    assert "samples ..." in same.output  # the sampling phase is announced
