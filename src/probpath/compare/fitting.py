"""Models in a comparison: device, selection (which catalog entries fit the data), training
under a shared budget, and sampling with a timed, counted call."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from probpath.catalog import CATALOG, CatalogEntry, get_entry
from probpath.compare.space import DataSpace, dequantize_held_out
from probpath.core.model import Estimator, Model, draw
from probpath.data.dataset import Dataset
from probpath.training.seeding import seed_everything

__all__ = [
    "TrainOutcome",
    "draw_samples",
    "model_device_dtype",
    "resolve_device",
    "sampling_nfe",
    "sampling_nfe_text",
    "select_entries",
    "train_model",
    "unfit_reason",
]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; raises ``ValueError`` for unusable devices.

    The Trainer's rule (``training.distributed.resolve_device``: a bare ``cuda`` is this
    process's GPU under torchrun), plus a check that a given GPU index exists.
    """
    from probpath.training.distributed import resolve_device as trainer_device

    dev = trainer_device(str(device), int(os.environ.get("LOCAL_RANK", "0") or 0))
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA device(s))"
        )
    return dev


def unfit_reason(entry: CatalogEntry, dataset: Dataset) -> str | None:
    """Why ``entry`` cannot run on ``dataset`` (``None`` if it can)."""
    space = DataSpace.for_entry(dataset, entry.data)
    if not entry.accepts(space.model_event_shape):
        return f"takes {entry.data} data, the data set has shape {dataset.event_shape}"
    if entry.cls.capabilities.conditional and (dataset.y is None or dataset.num_classes < 1):
        return "is conditional and the data set has no labels"
    return None


def select_entries(models: Sequence[str] | None, dataset: Dataset) -> list[CatalogEntry]:
    """The catalog entries to compare on ``dataset``.

    ``None`` selects every entry with ``in_compare=True`` that can take the data (others
    are skipped silently); explicit names must exist and fit the data (``ValueError``
    otherwise, naming the model and the reason).
    """
    if models is None:
        return [e for e in CATALOG if e.in_compare and unfit_reason(e, dataset) is None]
    names = list(models)
    if not names:
        raise ValueError("no models given; pass names such as --models gaussian,gmm")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"model(s) {dupes} listed twice; list each model once")
    entries = [get_entry(n) for n in names]
    for e in entries:
        why = unfit_reason(e, dataset)
        if why is not None:
            raise ValueError(f"model {e.name!r} {why}; leave it out of --models")
    return entries


@dataclass
class TrainOutcome:
    """What :func:`train_model` returns.

    Attributes:
        model: the model to evaluate (the EMA copy when it has forgotten its initialisation).
        seconds: wall time of training / fitting.
        steps: optimizer steps (``None`` for estimators).
        final_loss: last logged training loss, if any.
        used_ema: whether ``model`` is the EMA copy.
        run_dir: the Trainer's run directory (``None`` when nothing was written).
        history: the Trainer's logged records (``step``, ``loss``, ...); empty for estimators.
    """

    model: Any
    seconds: float
    steps: int | None = None
    final_loss: float | None = None
    used_ema: bool = False
    run_dir: Path | None = None
    history: list[dict] = field(default_factory=list)


def train_model(
    model,
    train: Dataset,
    *,
    space: DataSpace,
    steps: int | None = None,
    time_budget: float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    lr: float | None = None,
    out_dir: str | Path | None = None,
    quick: bool = False,
    resume: str | Path | None = None,
    trainer_options: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Fit ``model`` on ``train`` (original space; mapped through ``space`` here).

    Estimators are fitted with ``fit`` on one seeded dequantised draw of the data (float64);
    neural models are trained by the shared Trainer (which dequantises every batch of
    discrete data afresh); ``resume`` continues a Trainer run from its last checkpoint.
    ``trainer_options`` are further :class:`~probpath.training.TrainConfig` fields (e.g.
    ``progress``, ``progress_label``, ``ckpt_every``, ``ckpt_seconds``); by default the
    Trainer reports no progress here.
    """
    device = resolve_device(device)
    caps = model.capabilities
    if caps.estimator:
        x = space.to_model(dequantize_held_out(train.x.double(), space, seed)).to(device)
        seed_everything(seed)  # estimators that draw from the global streams (k-means++ ...)
        t0 = time.perf_counter()
        model.fit(x)
        seconds = time.perf_counter() - t0
        if out_dir is not None:
            model.save(out_dir)
        return TrainOutcome(model, seconds, run_dir=None if out_dir is None else Path(out_dir))

    from probpath.training import TrainConfig, Trainer

    options: dict[str, Any] = {
        "steps": steps,
        "time_budget": time_budget,
        "seed": seed,
        "device": str(device),
        "out_dir": None if out_dir is None else str(out_dir),
        "progress": "off",
    }
    if batch_size is not None:
        options["batch_size"] = batch_size
    if lr is not None:
        options["lr"] = lr
    if quick:
        options.update(warmup_steps=10, ema_decay=0.99, log_every=10)
    options.update(trainer_options or {})
    config = TrainConfig(**options)
    t0 = time.perf_counter()
    result = Trainer(config).fit(model, space.model_dataset(train), resume=resume)
    seconds = result.seconds or time.perf_counter() - t0
    n_steps = int(result.steps)
    final_loss = None
    history = result.history
    for record in reversed(history):
        if isinstance(record, dict) and "loss" in record:
            final_loss = float(record["loss"])
            break
    trained, used_ema = result.model, False
    ema, decay = result.ema_model, config.ema_decay
    # Without the EMA warm-up the copy still carries decay**steps of the random
    # initialisation: use it only once that weight is below 1 %.
    if ema is not None and decay is not None and (config.ema_warmup or decay**n_steps < 0.01):
        trained, used_ema = ema, True
    trained.eval()
    return TrainOutcome(
        trained, seconds, n_steps, final_loss, used_ema, result.run_dir, list(history)
    )


def sampling_nfe(model: Model | Estimator) -> int | None:
    """Network evaluations per sample of the model's default sampler, as the model reports.

    The documented hook is :attr:`Model.sampling_nfe <probpath.core.model.Model>` (an ``int``
    attribute or property, ``None`` until known); one-step models (``capabilities.one_step``)
    that report nothing give 1; estimators sample in closed form and give ``None``. ``None``
    means unknown — the table prints "—" rather than guess.
    """
    value = model.sampling_nfe if isinstance(model, Model) else None
    if value is None and model.capabilities.one_step:
        return 1
    return None if value is None else int(value)


def sampling_nfe_text(model: Model | Estimator) -> str | None:
    """The NFE as the survey prints it: :attr:`Model.sampling_nfe_text
    <probpath.core.model.Model>` ("N×2" when guided), else :func:`sampling_nfe` as text;
    ``None`` when unknown (estimators)."""
    text = model.sampling_nfe_text if isinstance(model, Model) else None
    if text is not None:
        return text
    nfe = sampling_nfe(model)
    return None if nfe is None else str(nfe)


def model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    if isinstance(model, torch.nn.Module):
        for p in list(model.parameters()) + list(model.buffers()):
            if p.is_floating_point():
                return p.device, p.dtype
        return torch.device("cpu"), torch.float32
    for v in vars(model).values():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.device, v.dtype
    return torch.device("cpu"), torch.float64


def draw_samples(
    model,
    n: int,
    *,
    cond: torch.Tensor | None = None,
    seed: int = 0,
    **options: Any,
) -> tuple[torch.Tensor, float]:
    """:func:`~probpath.core.model.draw` (the generative ``sample``) with a seeded generator
    on the model's device.

    Returns ``(samples, seconds)``; ``options`` (e.g. ``sampler``, ``steps``) are passed only
    when given.
    """
    device, _ = model_device_dtype(model)
    g = torch.Generator(device=device).manual_seed(seed)
    kwargs = {k: v for k, v in options.items() if v is not None}
    if cond is not None:
        kwargs["cond"] = cond.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = draw(model, n, generator=g, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    return out.detach(), seconds
