"""What a training run writes and reads back: ``config.json``'s training record,
``metrics.jsonl``, and the checkpoints that let a run resume exactly (weights, EMA,
optimizers, schedules, sampler position, every rank's random streams).

The functions take the Trainer's run state (``trainer._Run``) and are its file side; the
loop itself is in :mod:`probpath.training.trainer`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from probpath.core.serialization import CheckpointError, atomic_write_bytes, atomic_write_json
from probpath.training import checkpoint as ckpt
from probpath.training.config import TrainConfig
from probpath.training.distributed import all_gather_tensors, barrier
from probpath.training.sampler import derive_seed
from probpath.training.seeding import environment, seed_everything

__all__ = [
    "METRICS_FILE",
    "add_train_config",
    "check_out_dir",
    "model_record",
    "normalize",
    "prepare_run_dir",
    "read_history",
    "restore_state",
    "save_state",
    "schedule_record",
]

METRICS_FILE = "metrics.jsonl"


def normalize(value: Any) -> Any:
    """JSON view of a config value (tuples -> lists, enums -> values)."""
    if isinstance(value, Enum):
        return normalize(value.value)
    if isinstance(value, tuple | list):
        return [normalize(v) for v in value]
    if isinstance(value, dict):
        return {str(k): normalize(v) for k, v in value.items()}
    return value


def read_history(path: Path, up_to: int) -> list[dict]:
    """Records of ``metrics.jsonl`` with ``step <= up_to`` (a torn last line is dropped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= up_to:
            out.append(rec)
    return out


def check_out_dir(cfg: TrainConfig, resume) -> None:
    """Refuse to write a fresh run over a finished or checkpointed one (the CLI's rule)."""
    if cfg.out_dir is None or resume is not None or cfg.overwrite:
        return
    out = Path(cfg.out_dir)
    if (out / "model.safetensors").is_file() or ckpt.has_checkpoint(out):
        raise FileExistsError(
            f"{out} already holds a run; continue it with fit(..., resume={str(out)!r}), "
            "or pass TrainConfig(overwrite=True) to replace it, or choose another out_dir"
        )


def add_train_config(run_dir: Path, cfg: TrainConfig, device=None) -> None:
    """Add the TrainConfig (``"train"``) and the :func:`environment` (``"environment"``) to the
    ``config.json`` that ``model.save`` wrote."""
    meta = json.loads((run_dir / "config.json").read_text())
    meta["train"] = normalize(asdict(cfg))
    meta["environment"] = environment(device if device is not None else cfg.device)
    atomic_write_json(run_dir / "config.json", meta)


def prepare_run_dir(run, fresh: bool) -> None:
    """Write ``config.json`` (the model's, plus the TrainConfig and environment) and
    ``metrics.jsonl`` (the history so far) into the run directory."""
    run_dir = run.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        run.model.save(run_dir)  # config.json exactly as model.save writes it
    else:
        run.model._write_config(run_dir)
    add_train_config(run_dir, run.cfg, run.device)
    lines = "".join(json.dumps(r, allow_nan=False) + "\n" for r in run.history)
    atomic_write_bytes(run_dir / METRICS_FILE, lines.encode())


def model_record(run) -> dict:
    """The model's class and configuration, as the checkpoint stores them."""
    return {"class": type(run.model).__name__, "config": normalize(run.model.config)}


def schedule_record(run) -> dict:
    """The learning-rate schedules (a pure function of the step; stored to be checked)."""
    return {
        "kind": run.cfg.lr_schedule,
        "warmup_steps": run.cfg.warmup_steps,
        "total_steps": run.cfg.steps,
        "base_lr": dict(run.base_lr),
        "last_lr": {n: o.param_groups[0]["lr"] for n, o in run.optimizers.items()},
    }


def save_state(run) -> None:
    """Write a checkpoint (collective under DDP: every rank's RNG state is gathered)."""
    rng = ckpt.rng_state_tensors(run.data_gen, run.device)
    gathered = all_gather_tensors(rng, run.info, run.device)
    if run.write:
        state: dict[str, torch.Tensor] = {}
        optim_meta = {}
        for name, opt in run.optimizers.items():
            tensors, meta = ckpt.flatten_optimizer_state(opt.state_dict(), f"optim.{name}")
            state.update(tensors)
            optim_meta[name] = meta
        for r, tensors in enumerate(gathered):
            state.update({f"rng.rank{r}.{k}": v for k, v in tensors.items()})
        meta = {
            "step": run.step,
            "seconds": run._seconds(),
            "sampler": run.sampler.state_dict(),
            "world_size": run.info.world_size,
            "optimizers": optim_meta,
            "schedule": schedule_record(run),
            "scalers": {n: normalize(s.state_dict()) for n, s in run.scalers.items()},
            "accumulator": run.acc,
            "model": model_record(run),
            "train": normalize(asdict(run.cfg)),
        }
        ema = run.ema.state_dict() if run.ema is not None else None
        ckpt.save_checkpoint(
            run.run_dir, model=run.model.state_dict(), ema=ema, state=state, meta=meta
        )
        run.last_ckpt = run.run_dir
    barrier(run.info)
    run.saved_step = run.step


def restore_state(run, resume: Path) -> None:
    """Load the checkpoint in ``resume`` into ``run``: weights, EMA, optimizers, scalers,
    step, clock, sampler position, RNG streams (bit-exact when the world size is the same)
    and the history up to the checkpoint."""
    ck = ckpt.load_checkpoint(resume, device=run.device)
    meta = ck.meta
    record = meta.get("model", {})
    if record != model_record(run):
        raise CheckpointError(
            f"{resume} was trained with {record.get('class')}({record.get('config')}), not "
            f"{type(run.model).__name__}({normalize(run.model.config)}); build the model "
            "with the saved configuration (see its config.json)"
        )
    run.model.load_weights(ck.model, str(resume / ckpt.MODEL_FILE))
    if run.ema is not None:
        if ck.ema is None:
            raise CheckpointError(f"{resume} has no EMA weights; resume with ema_decay=None")
        run.ema.model.load_weights(ck.ema, str(resume / ckpt.EMA_FILE))
    try:
        for name, opt in run.optimizers.items():
            sd = ckpt.unflatten_optimizer_state(ck.state, meta["optimizers"][name], f"optim.{name}")
            opt.load_state_dict(sd)
        for name, scaler in run.scalers.items():
            saved = meta["scalers"].get(name) or {}
            if scaler.is_enabled() and saved:
                scaler.load_state_dict(saved)
        run.step = int(meta["step"])
        run.seconds_before = float(meta["seconds"])
        run.sampler.epoch = int(meta["sampler"]["epoch"])
        run.sampler.position = int(meta["sampler"]["position"])
        run.acc = {"count": int(meta["accumulator"]["count"]),
                    "sums": dict(meta["accumulator"]["sums"])}  # fmt: skip
        saved_world = int(meta["world_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{resume / ckpt.STATE_JSON} is malformed ({exc})") from None
    if saved_world == run.info.world_size:
        prefix = f"rng.rank{run.info.rank}."
        rng = {k[len(prefix) :]: v for k, v in ck.state.items() if k.startswith(prefix)}
        ckpt.restore_rng_state(rng, run.data_gen, run.device)
    else:
        warnings.warn(
            f"the checkpoint was written by {saved_world} processes and is resumed by "
            f"{run.info.world_size}: random streams are re-seeded, so the run is not "
            "bit-identical to an uninterrupted one",
            stacklevel=5,
        )
        seed_everything(derive_seed(run.cfg.seed, run.info.rank, run.step))
    saved = dict(meta.get("schedule") or {})
    saved.pop("last_lr", None)
    now = schedule_record(run)
    now.pop("last_lr")
    if saved and saved != now:
        warnings.warn(
            f"the learning-rate schedule differs from the checkpoint's ({saved} -> {now}); "
            "the resumed run follows the new configuration",
            stacklevel=5,
        )
    run.history = read_history(resume / METRICS_FILE, run.step)
    run.last_ckpt = resume
    run.saved_step = run.step
