"""``Trainer(TrainConfig).fit(model, dataset)``: the one training loop (DESIGN.md, abstraction 6).

AdamW per optimizer group with linear warm-up + cosine decay, gradient clipping, an EMA of
the weights, mixed precision on CUDA (bf16, or fp16 with a gradient scaler), a step and/or
time budget, ``metrics.jsonl`` logging, sample plots, atomic checkpoints with exact resume,
and data-parallel training under ``torchrun``. Classical estimators are accepted too
(``model.fit(x)`` is called and timed) so callers need not branch.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from probpath.core.model import Estimator, Model, is_conditional
from probpath.data.dataset import Dataset
from probpath.training import checkpoint as ckpt
from probpath.training.config import TrainConfig, TrainingError, TrainResult
from probpath.training.data import as_training_data, bin_width, dequantize_batch
from probpath.training.distributed import (
    agree_on_signal,
    all_reduce_mean_,
    amp_dtype,
    broadcast_module_,
    global_mean,
    is_main_process,
    rank0_float,
    setup_distributed,
)
from probpath.training.ema import EMA
from probpath.training.interrupt import TrainingInterrupted, catch_signals
from probpath.training.progress import Progress
from probpath.training.reporting import plot_run_samples
from probpath.training.run_files import (
    METRICS_FILE,
    add_train_config,
    check_out_dir,
    prepare_run_dir,
    restore_state,
    save_state,
)
from probpath.training.sampler import EpochSampler, derive_seed
from probpath.training.schedule import lr_factor
from probpath.training.seeding import mark_pretrained, seed_everything, seeded_init

__all__ = ["TrainConfig", "TrainResult", "Trainer", "TrainingError"]


class Trainer:
    """Train any :class:`~probpath.core.Model` (or fit an :class:`~probpath.core.Estimator`).

    Args:
        config: a :class:`TrainConfig`.

    The model provides ``loss(x, cond) -> (batch,)`` (averaged over the batch here), or
    ``train_step(x, cond, step, update)`` together with ``optimizer_groups()`` for models
    with several optimizers; ``update(loss, group)`` scales and back-propagates the scalar
    ``loss``, averages gradients over ranks, unscales, clips the group's parameters, steps
    the group's optimizer and zeroes all gradients. Conditional models
    (``capabilities.conditional``) receive the data set's labels as ``cond``.

    >>> import torch
    >>> from probpath.core import Capabilities, Model
    >>> class Mean(Model):
    ...     capabilities = Capabilities(route="likelihood", section="§1.1")
    ...     def __init__(self, event_shape=(1,)):
    ...         super().__init__()
    ...         self.event_shape = tuple(event_shape)
    ...         self.mu = torch.nn.Parameter(torch.zeros(event_shape))
    ...     def loss(self, x, cond=None):
    ...         return 0.5 * ((x - self.mu) ** 2).sum(1)
    >>> data = torch.full((64, 1), 3.0)
    >>> cfg = TrainConfig(steps=300, batch_size=64, lr=0.1, warmup_steps=0, ema_decay=None,
    ...                   progress="off")
    >>> result = Trainer(cfg).fit(Mean(), data)
    >>> round(result.model.mu.item(), 2)
    3.0
    """

    def __init__(self, config: TrainConfig | None = None):
        self.config = config if config is not None else TrainConfig()
        if not isinstance(self.config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(self.config).__name__}")

    # --- entry point ---------------------------------------------------------------------

    def fit(self, model, dataset, *, resume: str | Path | None = None) -> TrainResult:
        """Train ``model`` on ``dataset``.

        Args:
            model: a ``Model`` (trained here) or an ``Estimator`` (``model.fit(x)``).
            dataset: the training data: a probpath :class:`Dataset`, a tensor or NumPy
                array ``(N, ...)``, or a torch ``Dataset`` / ``DataLoader`` of ``x`` or
                ``(x, y)`` items (read once into memory; the Trainer draws its own seeded
                batches, see :func:`~probpath.training.data.as_training_data`).
            resume: a run directory to continue from exactly (its last committed
                checkpoint). Without ``config.out_dir`` the run continues in that folder.

        Raises:
            TrainingError: on a non-finite loss or gradient.
            TrainingInterrupted: SIGINT / SIGTERM arrived; a checkpoint was written.
            CheckpointError: when ``resume`` is not a valid checkpoint of this model.
            FileExistsError: ``config.out_dir`` holds a finished or checkpointed run and
                neither ``resume`` nor ``config.overwrite`` says what to do with it.
        """
        data = as_training_data(dataset)
        check_out_dir(self.config, resume)
        if isinstance(model, Estimator):
            return self._fit_estimator(model, data)
        if not isinstance(model, Model):
            raise TypeError(
                f"model must be a probpath Model or Estimator, got {type(model).__name__}"
            )
        return _Run(self.config, model, data, resume).train()

    def _fit_estimator(self, model: Estimator, data: Dataset) -> TrainResult:
        cfg = self.config
        x = data.x
        if cfg.dequantize and data.discrete:
            g = torch.Generator(device=x.device).manual_seed(derive_seed(cfg.seed, 0xDE0))
            x = dequantize_batch(x, bin_width(data, x), g)
        seed_everything(derive_seed(cfg.seed, 0))
        start = time.perf_counter()
        model.fit(x)
        seconds = time.perf_counter() - start
        run_dir = None
        if cfg.out_dir is not None:
            run_dir = Path(cfg.out_dir)
            if is_main_process():  # every torchrun rank fits the same estimator; one writes
                model.save(run_dir)
                add_train_config(run_dir, cfg)
        return TrainResult(model, None, [], 0, seconds, run_dir)


class _Run:
    """One call of ``Trainer.fit`` on a neural model: the state of the loop."""

    def __init__(self, cfg: TrainConfig, model: Model, data: Dataset, resume):
        self.cfg = cfg
        self.model = model
        self.info, self.device = setup_distributed(cfg.device)
        self.amp_dtype = amp_dtype(cfg.amp, self.device)
        self.run_dir = Path(cfg.out_dir) if cfg.out_dir else (Path(resume) if resume else None)
        self.write = self.run_dir is not None and self.info.is_main
        self.last_ckpt: Path | None = None
        self.saved_step = -1

        # per instance: a path model built with num_classes > 0 is conditional too
        self.conditional = is_conditional(model)
        model.to(self.device)
        model.train()
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        self.x = data.x.to(self.device, dtype)
        self.y = None
        if self.conditional:
            if data.y is None:
                raise ValueError(
                    f"{type(model).__name__} is conditional: the data set needs labels (Dataset.y)"
                )
            self.y = data.y.to(self.device)
        self.data = data
        self.event_shape = tuple(data.x.shape[1:])
        self.bin_width = None
        if cfg.dequantize and data.discrete:
            self.bin_width = bin_width(data, self.x)

        if resume is None:
            seeded_init(model, cfg.seed, cfg.init)
            seed_everything(derive_seed(cfg.seed, self.info.rank))
        self.groups = model.optimizer_groups()
        if not self.groups or any(not g.params for g in self.groups.values()):
            raise ValueError(f"{type(model).__name__} has an optimizer group without parameters")
        self.has_train_step = callable(getattr(model, "train_step", None))
        if len(self.groups) > 1 and not self.has_train_step:
            raise ValueError(
                f"{type(model).__name__} has {len(self.groups)} optimizer groups but no "
                "train_step(x, cond, step, update); define it to say how each group is updated"
            )
        self.base_lr = {n: cfg.lr * g.lr_scale for n, g in self.groups.items()}
        self.optimizers = {
            n: torch.optim.AdamW(
                g.params,
                lr=self.base_lr[n],
                betas=tuple(g.betas) if g.betas is not None else cfg.betas,
                weight_decay=cfg.weight_decay,
            )
            for n, g in self.groups.items()
        }
        fp16 = self.amp_dtype is torch.float16
        self.scalers = {n: torch.amp.GradScaler("cuda", enabled=fp16) for n in self.groups}
        broadcast_module_(model, self.info)
        self.ema = EMA(model, cfg.ema_decay, cfg.ema_warmup) if cfg.ema_decay is not None else None
        self.sampler = EpochSampler(
            len(self.x), cfg.batch_size, cfg.seed, rank=self.info.rank,
            world_size=self.info.world_size,
        )  # fmt: skip
        if self.sampler.batch_size < cfg.batch_size and self.info.is_main:
            warnings.warn(
                f"batch_size={cfg.batch_size} exceeds the {self.sampler.shard_size} rows per "
                f"process; using batches of {self.sampler.batch_size}",
                stacklevel=3,
            )
        self.data_gen = torch.Generator(device=self.device)
        self.data_gen.manual_seed(derive_seed(cfg.seed, self.info.rank, 0xDE0))
        self.step = 0
        self.seconds_before = 0.0
        self.time_fraction: float | None = None  # of cfg.time_budget, set by _stop
        self.history: list[dict] = []
        self.acc: dict[str, Any] = {"count": 0, "sums": {}}
        if resume is not None:
            restore_state(self, Path(resume))
        elif self.write:
            ckpt.clear_checkpoint(self.run_dir)
        if self.write:
            prepare_run_dir(self, fresh=resume is None)

    # --- the loop --------------------------------------------------------------------------

    def _seconds(self) -> float:
        return self.seconds_before + (time.perf_counter() - self.t0)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def _fail(self, what: str, value: float, group: str | None = None) -> TrainingError:
        several = group is not None and len(self.groups) > 1
        where = f" (optimizer group {group!r})" if several else ""
        last = str(self.last_ckpt) if self.last_ckpt is not None else "none saved"
        return TrainingError(
            f"non-finite {what} ({value}) at step {self.step}, epoch {self.epoch}, batch "
            f"{self.batch_index} of the epoch{where}; last good checkpoint: {last}. Lower lr, "
            "keep grad_clip on, or check the data and the model for overflow",
            step=self.step,
            batch=self.batch_index,
            checkpoint=self.last_ckpt,
        )

    def _update(self, loss: torch.Tensor, group: str) -> None:
        """Back-propagate a scalar loss and step the optimizer of ``group``."""
        if group not in self.optimizers:
            raise ValueError(
                f"unknown optimizer group {group!r}; the groups are {sorted(self.optimizers)}"
            )
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError("update() takes a scalar loss tensor; average it with .mean() first")
        value = global_mean(loss, self.info)
        if not math.isfinite(value):
            raise self._fail("loss", value, group)
        self.step_loss += value
        scaler, opt = self.scalers[group], self.optimizers[group]
        with torch.autocast(device_type=self.device.type, enabled=False):
            scaler.scale(loss).backward()
        params = self.groups[group].params
        all_reduce_mean_([p.grad for p in params if p.grad is not None], self.info)
        scaler.unscale_(opt)
        if self.cfg.grad_clip is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip))
            if not math.isfinite(norm) and not scaler.is_enabled():
                raise self._fail("gradient norm", norm, group)
            self.step_metrics[f"grad_norm_{group}" if len(self.groups) > 1 else "grad_norm"] = norm
        scaler.step(opt)
        scaler.update()
        self.model.zero_grad(set_to_none=True)

    def _budget_used(self) -> float | None:
        """Share of the budget used before this step (``Model.budget_used``)."""
        shares = [] if self.time_fraction is None else [self.time_fraction]
        if self.cfg.steps is not None:
            shares.append(self.step / self.cfg.steps)
        return max(shares) if shares else None

    def _one_step(self) -> None:
        index, self.epoch, self.batch_index = self.sampler.next_batch()
        index = index.to(self.device)
        xb = self.x[index]
        cond = self.y[index] if self.y is not None else None
        if self.bin_width is not None:
            xb = dequantize_batch(xb, self.bin_width, self.data_gen)
        for name, opt in self.optimizers.items():
            lr = self.base_lr[name] * lr_factor(
                self.step,
                warmup_steps=self.cfg.warmup_steps,
                total_steps=self.cfg.steps,
                kind=self.cfg.lr_schedule,
                time_fraction=self.time_fraction,
            )
            for pg in opt.param_groups:
                pg["lr"] = lr
        self.step_loss = 0.0
        self.step_metrics: dict[str, float] = {}
        self.model.budget_used = self._budget_used()
        self.model.zero_grad(set_to_none=True)
        if self.has_train_step:
            with self._autocast():
                out = self.model.train_step(xb, cond, self.step, self._update) or {}
            self.step_metrics.update({k: float(v) for k, v in out.items()})
        else:
            with self._autocast():
                loss = self.model.loss(xb, cond)
            if loss.shape != (len(xb),):
                raise ValueError(
                    f"{type(self.model).__name__}.loss must return per-sample losses of shape "
                    f"({len(xb)},), got {tuple(loss.shape)}"
                )
            if loss.dtype in (torch.float16, torch.bfloat16):
                loss = loss.float()
            self._update(loss.mean(), next(iter(self.groups)))
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        if self.info.enabled and any(True for _ in self.model.buffers()):
            broadcast_module_(self.model, self.info, buffers_only=True)
        self.step += 1
        sums = self.acc["sums"]
        for k, v in {"loss": self.step_loss, **self.step_metrics}.items():
            sums[k] = sums.get(k, 0.0) + v
        self.acc["count"] += 1

    def _log(self) -> dict | None:
        if self.acc["count"] == 0:
            return None
        count, sums = self.acc["count"], self.acc["sums"]
        rec: dict[str, Any] = {"step": self.step, "epoch": self.epoch}
        rec.update({k: v / count for k, v in sums.items()})
        names = list(self.optimizers)
        rec["lr"] = self.optimizers[names[0]].param_groups[0]["lr"]
        if len(names) > 1:
            rec.update({f"lr_{n}": self.optimizers[n].param_groups[0]["lr"] for n in names})
        rec["seconds"] = round(self._seconds(), 4)
        self.history.append(rec)
        self.acc = {"count": 0, "sums": {}}
        if self.write:
            with open(self.run_dir / METRICS_FILE, "a") as f:
                f.write(json.dumps(rec, allow_nan=False) + "\n")
        return rec

    def _stop(self) -> bool:
        cfg = self.cfg
        if cfg.steps is not None and self.step >= cfg.steps:
            return True
        if cfg.time_budget is None:
            return False
        # every rank reads rank 0's clock: the same stop and the same learning rate everywhere
        self.time_fraction = rank0_float(self._seconds(), self.info, self.device) / cfg.time_budget
        return self.time_fraction >= 1.0

    def train(self) -> TrainResult:
        cfg = self.cfg
        self.t0 = time.perf_counter()
        self.epoch, self.batch_index = self.sampler.epoch, self.sampler.position
        mode = cfg.progress if self.info.is_main else "off"
        bar = Progress(cfg.steps, cfg.progress_label, mode=mode, initial=self.step)
        last_save = time.perf_counter()
        # Signals are caught by a run that writes; under DDP the ranks agree on the step
        # (agree_on_signal), all save collectively (rank 0 writes) and all stop.
        catch = self.run_dir is not None
        try:
            with catch_signals(catch) as flag:
                while not self._stop():
                    self._one_step()
                    budget = cfg.time_budget
                    bar.update(1, fraction=self._seconds() / budget if budget else None)
                    due = cfg.ckpt_every is not None and self.step % cfg.ckpt_every == 0
                    if self.step % cfg.log_every == 0:
                        rec = self._log()
                        bar.set_postfix(loss=f"{rec['loss']:.4g}")
                        if cfg.ckpt_seconds is not None:
                            waited = rank0_float(
                                time.perf_counter() - last_save, self.info, self.device
                            )
                            due = due or waited >= cfg.ckpt_seconds
                    if due:
                        self._save_if_writing()
                        last_save = time.perf_counter()
                    if cfg.sample_every is not None and self.step % cfg.sample_every == 0:
                        plot_run_samples(self)
                    name = agree_on_signal(flag.name, self.info, self.device) if catch else None
                    if name is not None:
                        self._interrupted(name)
            self._log()
            if self.saved_step != self.step:
                self._save_if_writing()
        finally:
            bar.close()
        self.model.eval()
        mark_pretrained(self.model)
        ema_model = self.ema.model if self.ema is not None else None
        if ema_model is not None:
            mark_pretrained(ema_model)
        return TrainResult(
            self.model, ema_model, list(self.history), self.step, self._seconds(), self.run_dir
        )

    def _interrupted(self, signal_name: str) -> None:
        """Checkpoint the current step and stop with :class:`TrainingInterrupted`."""
        if self.saved_step != self.step:
            save_state(self)
        raise TrainingInterrupted(
            f"training interrupted by {signal_name} after step {self.step}; the checkpoint in "
            f"{self.run_dir} continues it exactly: Trainer(config).fit(model, data, "
            f"resume={str(self.run_dir)!r})",
            step=self.step,
            checkpoint=self.run_dir,
            signal_name=signal_name,
        )

    def _save_if_writing(self) -> None:
        if self.run_dir is not None:
            save_state(self)
