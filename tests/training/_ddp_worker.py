"""Worker for the DDP test, launched by ``torchrun --nproc_per_node=2`` (gloo on CPU).

Writes into ``OUT`` (argv[1]): ``ddp/`` (5 steps, uninterrupted), ``resumed/`` (killed
after the checkpoint at step 3, resumed under DDP to step 5) and ``timed/`` (a 10 s time
budget on clocks that read one second per step, rank 1's running 3 s ahead; every rank saves
its final weights as ``timed_rank{R}.safetensors``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from _trainer_models import Regressor, toy_data

from probpath.core.serialization import save_tensors
from probpath.training import TrainConfig, Trainer
from probpath.training.trainer import _Run

__all__: list[str] = []


def config(out: Path, **kw) -> TrainConfig:
    base = dict(steps=5, batch_size=8, lr=5e-2, warmup_steps=2, grad_clip=0.5, ema_decay=0.9,
                log_every=1, out_dir=str(out), progress="off", device="cpu")  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def model(seed: int) -> Regressor:
    torch.manual_seed(seed)
    return Regressor().double()


def main(out: Path) -> None:
    data = toy_data(n=64)
    Trainer(config(out / "ddp")).fit(model(0), data)
    killed = model(0)
    killed.fail_at_call = 4
    try:
        Trainer(config(out / "resumed", ckpt_every=3)).fit(killed, data)
    except KeyboardInterrupt:
        pass
    # another initialisation per rank: the checkpoint (and rank 0's broadcast) must win
    resumed = model(10 + torch.distributed.get_rank())
    Trainer(config(out / "resumed", ckpt_every=3)).fit(resumed, data, resume=out / "resumed")
    rank = torch.distributed.get_rank()
    _Run._seconds = lambda self: float(self.step + 3 * rank)  # skewed clocks
    timed = Trainer(config(out / "timed", steps=None, time_budget=10.0)).fit(model(0), data)
    save_tensors(out / f"timed_rank{rank}.safetensors", timed.model.state_dict())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
