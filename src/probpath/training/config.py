"""Configuration, result and error types of the training loop (:class:`TrainConfig`,
:class:`TrainResult`, :class:`TrainingError`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probpath.training.schedule import LR_SCHEDULES
from probpath.training.seeding import INIT_MODES

__all__ = ["TrainConfig", "TrainResult", "TrainingError"]

_AMP = ("auto", "bf16", "fp16", "off")
_PROGRESS = ("auto", "on", "bar", "lines", "off")


class TrainingError(RuntimeError):
    """Training stopped on a non-finite loss or gradient.

    Attributes:
        step: the global optimizer step (from 0) whose batch failed.
        batch: the batch's index within its epoch.
        checkpoint: the last good checkpoint's run directory, or ``None`` if none was saved.
    """

    def __init__(self, message: str, *, step: int, batch: int, checkpoint: Path | None):
        super().__init__(message)
        self.step = step
        self.batch = batch
        self.checkpoint = checkpoint


@dataclass
class TrainConfig:
    """Everything the training loop needs besides the model and the data.

    Attributes:
        steps: maximum optimizer steps (``None``: only the time budget bounds training).
        time_budget: seconds of training; stops at whichever of steps / time comes first
            (counted over the whole run when resuming).
        batch_size: rows per step per process (per rank under DDP).
        lr / weight_decay / betas: AdamW hyper-parameters (a group's ``lr_scale`` and
            ``betas`` from ``Model.optimizer_groups`` apply on top).
        warmup_steps: linear warm-up length; ``lr_schedule``: ``"cosine"`` (decay to 0 at
            the end of the budget: at ``steps``, or when ``time_budget`` seconds are used up,
            whichever comes first) or ``"constant"``.
        grad_clip: maximum gradient norm per optimizer group (``None``: no clipping).
        ema_decay: decay of the weight EMA (``None``: no EMA model).
        ema_warmup: ramp the EMA decay up as ``min(ema_decay, (1 + k) / (10 + k))``.
        amp: ``"auto"`` (bf16 on CUDA when supported, off on CPU), ``"bf16"``, ``"fp16"``
            (with a gradient scaler) or ``"off"``; mixed precision is CUDA-only.
        device: ``"auto"`` (``cuda`` if available, else ``cpu``), ``"cpu"``, ``"cuda[:N]"``.
        seed: seeds the initial weights (see ``init``), torch / NumPy / Python RNGs (per
            rank), the data order and the noise: the same seed gives the same weights.
        init: ``"auto"`` (re-initialise the weights under ``seed``, unless they come from a
            fit or from ``probpath.load``), ``"seed"`` (always) or ``"keep"`` (train the
            weights as given: custom initialisation, fine-tuning);
            see :func:`probpath.training.seeding.seeded_init`.
        log_every / ckpt_every / sample_every: intervals in steps (``None``: never; a final
            checkpoint is always written when ``out_dir`` is set).
        ckpt_seconds: also checkpoint when this many seconds passed since the last one
            (checked at logging steps; ``None``: never). SIGINT / SIGTERM always end training
            with a checkpoint when ``out_dir`` is set (see ``training.interrupt``).
        n_plot_samples: samples per plot in ``samples/step_XXXXXX.png``.
        out_dir: run directory (``None``: nothing is written).
        overwrite: replace a finished or checkpointed run in ``out_dir`` (otherwise
            ``fit`` refuses; pass ``resume=out_dir`` to continue it instead).
        progress: ``"auto"`` (a ``tqdm.auto`` bar in a terminal or a notebook, plain lines
            every 10 % or 30 s elsewhere), ``"bar"`` (or ``"on"``), ``"lines"`` or ``"off"``.
        progress_label: what the progress output calls this run.
        dequantize: add uniform noise of one quantisation bin to discrete data
            (``Dataset.discrete``) at every step.
    """

    steps: int | None = 2000
    time_budget: float | None = None
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    warmup_steps: int = 100
    lr_schedule: str = "cosine"
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    ema_warmup: bool = True
    amp: str = "auto"
    device: str = "auto"
    seed: int = 0
    init: str = "auto"
    log_every: int = 50
    ckpt_every: int | None = None
    ckpt_seconds: float | None = 60.0
    sample_every: int | None = None
    n_plot_samples: int = 512
    out_dir: str | None = None
    overwrite: bool = False
    progress: str = "auto"
    progress_label: str = "train"
    dequantize: bool = True

    def __post_init__(self):
        def positive_int(name, value, allow_none=False):
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        positive_int("steps", self.steps, allow_none=True)
        positive_int("batch_size", self.batch_size)
        positive_int("log_every", self.log_every)
        positive_int("ckpt_every", self.ckpt_every, allow_none=True)
        positive_int("sample_every", self.sample_every, allow_none=True)
        positive_int("n_plot_samples", self.n_plot_samples)
        if self.ckpt_seconds is not None and not self.ckpt_seconds > 0:
            raise ValueError(f"ckpt_seconds must be positive or None, got {self.ckpt_seconds!r}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be positive seconds, got {self.time_budget!r}")
        if self.steps is None and self.time_budget is None:
            raise ValueError("set steps, time_budget, or both; otherwise training never stops")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        self.betas = tuple(float(b) for b in self.betas)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if isinstance(self.warmup_steps, bool) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or None, got {self.ema_decay!r}")
        if self.amp not in _AMP:
            raise ValueError(f"amp must be one of {_AMP}, got {self.amp!r}")
        if self.init not in INIT_MODES:
            raise ValueError(f"init must be one of {INIT_MODES}, got {self.init!r}")
        if self.progress not in _PROGRESS:
            raise ValueError(f"progress must be one of {_PROGRESS}, got {self.progress!r}")


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns.

    Attributes:
        model: the trained model, switched to ``eval`` mode.
        ema_model: the EMA copy (``None`` without EMA or for estimators).
        history: the logged records (also in ``metrics.jsonl``), earlier ones included
            when resuming.
        steps: optimizer steps taken in total (0 for estimators).
        seconds: training wall time in total.
        run_dir: the run directory, or ``None`` when nothing was written.
    """

    model: Any
    ema_model: Any
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    run_dir: Path | None = None
