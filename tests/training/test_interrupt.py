"""Runs survive interruption: a real SIGINT / SIGTERM ends training with a checkpoint that
resumes bit-exactly (in the Trainer and through ``probpath fit``), and time-based checkpoints
are written while training runs.

Bit-exact means byte-identical ``model.safetensors``: resume restores parameters, optimizer
moments, EMA, RNG streams and the data order, so the same float operations run in the same
order as in the uninterrupted run."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _trainer_models import NoisyDenoiser, toy_data

from probpath.core.serialization import read_json
from probpath.training import TrainConfig, Trainer, TrainingInterrupted
from probpath.training.checkpoint import has_checkpoint
from probpath.training.interrupt import parse_ckpt_every, resume_command

ROOT = Path(__file__).resolve().parents[2]


class SignalAt(NoisyDenoiser):
    """Sends a real signal to its own process on the loss call ``at`` (then goes on)."""

    at = -1  # set on an instance (not a constructor argument: resume checks the config)
    signum = int(signal.SIGINT)

    def loss(self, x, cond=None):
        if self.calls == self.at:
            os.kill(os.getpid(), self.signum)
        return super().loss(x, cond)


def _signalling(at, signum):
    model = SignalAt()
    model.at, model.signum = at, int(signum)
    return model


def _cfg(out, **kw):
    base = dict(steps=12, batch_size=16, lr=1e-2, warmup_steps=2, progress="off", log_every=3)
    base.update(kw)
    return TrainConfig(out_dir=str(out), **base)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_checkpoints_and_resumes_bit_exactly(tmp_path, signum):
    data = toy_data()
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    Trainer(_cfg(tmp_path / "full")).fit(SignalAt(), data)
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(_cfg(tmp_path / "cut")).fit(_signalling(4, signum), data)
    # the handler only sets a flag: the step whose loss sent the signal (call 4, step 5)
    # completes, then the loop checkpoints it and stops
    assert info.value.step == 5 and info.value.signal_name == signum.name
    assert "resume=" in str(info.value) and isinstance(info.value, KeyboardInterrupt)
    assert has_checkpoint(tmp_path / "cut")
    assert read_json(tmp_path / "cut" / "trainer_state.json")["step"] == 5
    assert signal.getsignal(signal.SIGINT) is before  # restored
    Trainer(_cfg(tmp_path / "cut")).fit(SignalAt(), data, resume=tmp_path / "cut")
    full = (tmp_path / "full" / "model.safetensors").read_bytes()
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == full


def test_checkpoints_every_few_seconds(tmp_path):
    class Stop(NoisyDenoiser):
        def loss(self, x, cond=None):
            if self.calls == 7:
                raise RuntimeError("crash")  # not a signal: nothing is saved on the way out
            return super().loss(x, cond)

    # ckpt_seconds tiny -> a checkpoint at every logging step (3, 6); the crash is at step 8
    with pytest.raises(RuntimeError, match="crash"):
        Trainer(_cfg(tmp_path / "a", ckpt_seconds=1e-9)).fit(Stop(), toy_data())
    assert read_json(tmp_path / "a" / "trainer_state.json")["step"] == 6
    with pytest.raises(RuntimeError, match="crash"):
        Trainer(_cfg(tmp_path / "b", ckpt_seconds=None)).fit(Stop(), toy_data())
    assert not has_checkpoint(tmp_path / "b")


@pytest.mark.parametrize("bad", ["0", "-5s", "ten", "0steps", "5 min"])
def test_ckpt_every_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="--ckpt-every"):
        parse_ckpt_every(bad)


def test_resume_command_drops_out_and_old_resume():
    argv = ["probpath", "fit", "cfm", "-o", "x", "--overwrite", "--resume=old", "--n", "5"]
    assert resume_command(argv, "runs/.x partial") == (
        "probpath fit cfm --n 5 --resume 'runs/.x partial'"
    )


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "probpath", *args]
    return subprocess.Popen(cmd, cwd=kw["cwd"], env=env, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_cli_ctrl_c_prints_the_resume_command_which_continues_exactly(tmp_path):
    args = ["fit", "cfm", "--data", "moons", "--n", "400", "--quick", "--steps", "600",
            "--batch-size", "64", "--quiet"]  # fmt: skip
    full = _cli(*args, "--out", "full", cwd=tmp_path)
    cut = _cli(*args, "--out", "cut", cwd=tmp_path)
    metrics = tmp_path / ".cut.partial" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        assert cut.poll() is None and time.monotonic() < deadline, cut.stderr.read()
        time.sleep(0.05)
    cut.send_signal(signal.SIGINT)
    err = cut.communicate(timeout=120)[1]
    assert cut.returncode == 130, err
    command = err.split("continue with:")[1].strip().splitlines()[0]
    assert command.startswith("probpath fit cfm") and "--resume .cut.partial" in command
    step = read_json(tmp_path / ".cut.partial" / "trainer_state.json")["step"]
    assert 20 <= step < 600  # interrupted mid-run (the quick config logs every 10 steps)
    again = _cli(*shlex.split(command)[1:], cwd=tmp_path)
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert full.wait(timeout=300) == 0, full.stderr.read()
    weights = (tmp_path / "cut" / "model.safetensors").read_bytes()
    assert weights == (tmp_path / "full" / "model.safetensors").read_bytes()
    assert read_json(tmp_path / "cut" / "trainer_state.json")["step"] == 600
