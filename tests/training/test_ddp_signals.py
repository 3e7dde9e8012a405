"""Signals under DDP: SIGTERM to ``torchrun`` (2 gloo ranks) stops every rank at the same
step, rank 0 writes one resumable checkpoint of that step, and every rank exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from probpath.core.serialization import load_tensors

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_every_rank_with_one_checkpoint(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{HERE}{os.pathsep}{SRC}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "_ddp_signal_worker.py"), str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 240  # start-up of three torch processes on a loaded box
    try:
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # to the agent, which forwards it to the ranks
        log = proc.communicate(timeout=180)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
    records = [tmp_path / f"interrupted_rank{r}.json" for r in (0, 1)]
    assert all(p.is_file() for p in records), log[-3000:]
    r0, r1 = (json.loads(p.read_text()) for p in records)
    # both ranks stopped on the signal, at the same step (they agree after every step)
    assert r0["signal"] == r1["signal"] == "SIGTERM" and r0["step"] == r1["step"] >= 3
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["step"] == r0["step"] and state["world_size"] == 2
    # the checkpoint holds the weights of that step, the same on both ranks (bit-exact)
    saved = load_tensors(tmp_path / "run" / "model.safetensors")
    w0 = load_tensors(tmp_path / "weights_rank0.safetensors")
    w1 = load_tensors(tmp_path / "weights_rank1.safetensors")
    assert all(torch.equal(saved[k], w0[k]) and torch.equal(w0[k], w1[k]) for k in saved)
