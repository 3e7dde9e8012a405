"""GPU behaviour of the Trainer: bf16 / fp16 autocast (with a gradient scaler for fp16),
automatic device placement, and a one-process NCCL group. Skipped without a CUDA GPU."""

from __future__ import annotations

import json
import socket

import pytest
import torch
from _trainer_models import Regressor, toy_data

from probpath.training import TrainConfig, Trainer

pytestmark = pytest.mark.cuda


def cfg(out=None, **kw):
    base = dict(steps=4, batch_size=16, lr=1e-2, warmup_steps=1, log_every=1, progress="off",
                out_dir=None if out is None else str(out))  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


class AutocastSpy(Regressor):
    seen: list = []

    def loss(self, x, cond=None):
        AutocastSpy.seen.append((torch.is_autocast_enabled("cuda"), self.net[0](x).dtype))
        return super().loss(x, cond)


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_step(tmp_path, amp, dtype):
    AutocastSpy.seen = []
    run = tmp_path / "run"
    result = Trainer(cfg(run, amp=amp, device="cuda", ckpt_every=2)).fit(
        AutocastSpy(), toy_data(dtype=torch.float32)
    )
    assert AutocastSpy.seen == [(True, dtype)] * 4
    for p in result.model.parameters():
        assert p.device.type == "cuda" and p.dtype == torch.float32 and torch.isfinite(p).all()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    scaler = json.loads((run / "trainer_state.json").read_text())["scalers"]["model"]
    if amp == "fp16":
        assert scaler["scale"] > 0  # GradScaler state is checkpointed
    else:
        assert scaler == {}
    resumed = Trainer(cfg(run, steps=6, amp=amp, device="cuda")).fit(
        AutocastSpy(), toy_data(dtype=torch.float32), resume=run
    )
    assert resumed.steps == 6 and [r["step"] for r in resumed.history] == list(range(1, 7))


def test_auto_device_puts_model_ema_data_and_samples_on_the_gpu(tmp_path):
    result = Trainer(cfg(tmp_path / "run", device="auto", sample_every=2, amp="off")).fit(
        Regressor(), toy_data(dtype=torch.float32)
    )
    assert result.model.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in result.ema_model.parameters())
    assert (tmp_path / "run" / "samples" / "step_000004.png").is_file()
    g = torch.Generator(device="cuda").manual_seed(0)
    assert result.model.sample(3, generator=g).device.type == "cuda"


def test_one_process_nccl_group(tmp_path):
    import torch.distributed as dist

    torch.manual_seed(0)
    plain = Trainer(cfg(device="cuda", amp="off")).fit(Regressor(), toy_data(dtype=torch.float32))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        run = tmp_path / "run"
        torch.manual_seed(0)
        grouped = Trainer(cfg(run, device="cuda", amp="off", ckpt_every=2)).fit(
            Regressor(), toy_data(dtype=torch.float32)
        )
        resumed = Trainer(cfg(run, steps=6, device="cuda", amp="off")).fit(
            Regressor(), toy_data(dtype=torch.float32), resume=run
        )
    finally:
        dist.destroy_process_group()
    assert grouped.steps == 4 and resumed.steps == 6
    for r in grouped.history:
        assert r["loss"] == pytest.approx(plain.history[r["step"] - 1]["loss"], rel=1e-4)
