"""Worker for the DDP signal test, launched by ``torchrun --nproc_per_node=2`` (gloo on CPU).

Trains until a signal stops it (a 300 s budget is only a backstop), catches
``TrainingInterrupted`` and writes ``OUT/interrupted_rank{R}.json`` (its step and signal);
rank 0 also saves the final weights it holds as ``OUT/weights_rank0.safetensors``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from _ddp_worker import config, model
from _trainer_models import toy_data

from probpath.core.serialization import save_tensors
from probpath.training import Trainer
from probpath.training.interrupt import TrainingInterrupted

__all__: list[str] = []


def main(out: Path) -> None:
    net = model(0)
    cfg = config(out / "run", steps=None, time_budget=300.0, ckpt_every=None, ckpt_seconds=None)
    try:
        Trainer(cfg).fit(net, toy_data(n=64))
        record = {"step": None, "signal": None}
    except TrainingInterrupted as exc:
        record = {"step": exc.step, "signal": exc.signal_name}
    rank = torch.distributed.get_rank()
    (out / f"interrupted_rank{rank}.json").write_text(json.dumps(record))
    save_tensors(out / f"weights_rank{rank}.safetensors", net.state_dict())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
