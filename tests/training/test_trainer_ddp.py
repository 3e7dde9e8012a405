"""Data parallelism: 2 gloo processes under torchrun with batch B per rank take the same
steps as 1 process with batch 2B (DistributedSampler-style sharding + gradient averaging),
a DDP run killed after a checkpoint resumes bit-identically, and a time budget is read from
rank 0's clock by every rank (the same stop and learning rate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _trainer_models import toy_data

from probpath.core.serialization import load_tensors

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_with_twice_the_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "_ddp_worker.py"), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    sys.path.insert(0, str(HERE))
    from _ddp_worker import config, model

    from probpath.training import Trainer

    single = Trainer(config(tmp_path / "single", batch_size=16)).fit(model(0), toy_data(n=64))
    ddp = load_tensors(tmp_path / "ddp" / "model.safetensors")
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ddp[k], v, atol=1e-6, rtol=0)
    ddp_losses = [json.loads(s)["loss"] for s in (tmp_path / "ddp" / "metrics.jsonl").open()]
    assert ddp_losses == pytest.approx([r["loss"] for r in single.history], rel=1e-10)

    resumed = load_tensors(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(resumed[k], v) for k, v in ddp.items())
    state = json.loads((tmp_path / "resumed" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 5

    # rank 1's clock runs ahead, yet both ranks stop after rank 0's 10 s with its learning
    # rates: the same weights as one process on the unskewed clock
    ranks = [load_tensors(tmp_path / f"timed_rank{r}.safetensors") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    from probpath.training.trainer import _Run

    clock = pytest.MonkeyPatch()
    clock.setattr(_Run, "_seconds", lambda self: float(self.step))
    try:
        cfg = config(tmp_path / "timed1", batch_size=16, steps=None, time_budget=10.0)
        timed = Trainer(cfg).fit(model(0), toy_data(n=64))
    finally:
        clock.undo()
    assert timed.steps == 10
    for k, v in timed.model.state_dict().items():
        torch.testing.assert_close(ranks[0][k], v, atol=1e-6, rtol=0)


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_initialised_one_process_group_gives_the_plain_result(tmp_path):
    """A group the caller set up is used (collectives and checkpoint gathering run)."""
    import torch.distributed as dist

    sys.path.insert(0, str(HERE))
    from _ddp_worker import config, model

    from probpath.training import Trainer

    plain = Trainer(config(tmp_path / "plain")).fit(model(0), toy_data(n=64))
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
    )
    try:
        grouped = Trainer(config(tmp_path / "group", ckpt_every=2)).fit(model(0), toy_data(n=64))
    finally:
        dist.destroy_process_group()
    for p, q in zip(plain.model.parameters(), grouped.model.parameters()):
        assert torch.equal(p, q)
    state = json.loads((tmp_path / "group" / "trainer_state.json").read_text())
    assert state["world_size"] == 1 and state["step"] == 5
