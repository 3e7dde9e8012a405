"""Trainer checkpoints: safetensors + JSON only, written so that a crash never loses the last one.

A run directory holds::

    config.json                model config exactly as ``model.save`` writes it + "train"
    model.safetensors          weights (``probpath.load(run_dir)`` works)
    ema.safetensors            EMA weights (when EMA is on)
    trainer_state.safetensors  optimizer moments, RNG states of every rank
    trainer_state.json         step, data order, schedules, scalers, optimizer hyper-parameters,
                               and the SHA-256 of each tensor file: the commit record
    metrics.jsonl, samples/

Commit protocol: each tensor file is replaced atomically (temp file, fsync, ``os.replace``)
after the committed version has been kept as ``NAME.prev`` (a hard link, or a copy); the
JSON commit record is written last. Wherever a save is interrupted, each file named in the
committed record exists, as ``NAME`` or ``NAME.prev``, with the recorded digest, so
:func:`load_checkpoint` always finds the previous complete checkpoint.

Optimizer state dicts are flattened: tensors go to ``trainer_state.safetensors`` under
``optim.<group>.<param index>.<key>``, everything else (hyper-parameters, non-tensor
state) to JSON. Nothing is ever pickled.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probpath.core.serialization import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_json,
    load_tensors,
    read_json,
    remove_stale_temp_files,
    tensors_to_bytes,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "MODEL_FILE",
    "EMA_FILE",
    "STATE_FILE",
    "STATE_JSON",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "has_checkpoint",
    "clear_checkpoint",
    "committed_file",
    "flatten_optimizer_state",
    "unflatten_optimizer_state",
    "rng_state_tensors",
    "restore_rng_state",
]

CHECKPOINT_FORMAT = 1
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"
_TENSOR_FILES = (MODEL_FILE, EMA_FILE, STATE_FILE)


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: the model's state dict.
        ema: the EMA model's state dict, or ``None``.
        state: flat trainer tensors (optimizer moments, RNG states).
        meta: the JSON commit record (step, data order, schedules, ...).
        path: the run directory it came from.
    """

    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    state: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _prev(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def _keep_committed(path: Path, committed_digest: str | None) -> None:
    """Make ``NAME.prev`` the committed version before ``NAME`` is overwritten.

    If ``NAME`` is not the committed version (left by an interrupted save), ``NAME.prev``
    already is, and it is left alone.
    """
    if committed_digest is None or _sha256(path) != committed_digest:
        return
    tmp = path.with_name(f".{path.name}.prev.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(path, tmp)
    except OSError:  # file systems without hard links
        shutil.copyfile(path, tmp)
    os.replace(tmp, _prev(path))


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a trainer commit record."""
    return (Path(run_dir) / STATE_JSON).is_file()


def clear_checkpoint(run_dir: str | os.PathLike) -> None:
    """Remove a previous run's checkpoint files (before a fresh run reuses the folder)."""
    run_dir = Path(run_dir)
    for name in (*_TENSOR_FILES, STATE_JSON):
        for p in (run_dir / name, _prev(run_dir / name)):
            if p.is_file():
                p.unlink()


def save_checkpoint(
    run_dir: str | os.PathLike,
    *,
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor] | None,
    state: dict[str, torch.Tensor],
    meta: dict[str, Any],
) -> Path:
    """Write one checkpoint into ``run_dir`` (see the module docstring for the protocol).

    Args:
        model / ema: state dicts (``ema`` may be ``None``).
        state: flat trainer tensors.
        meta: JSON-able trainer state; ``"files"`` and ``"format"`` are added.

    Returns:
        ``run_dir``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(run_dir)  # left by a save that was killed
    committed: dict[str, str] = {}
    if (run_dir / STATE_JSON).is_file():
        try:
            committed = dict(read_json(run_dir / STATE_JSON).get("files", {}))
        except CheckpointError:
            committed = {}
    digests: dict[str, str] = {}
    for name, tensors in ((MODEL_FILE, model), (EMA_FILE, ema), (STATE_FILE, state)):
        if tensors is None:
            continue
        path = run_dir / name
        _keep_committed(path, committed.get(name))
        data = tensors_to_bytes(tensors)
        atomic_write_bytes(path, data)
        digests[name] = hashlib.sha256(data).hexdigest()
    atomic_write_json(run_dir / STATE_JSON, {**meta, "format": CHECKPOINT_FORMAT, "files": digests})
    return run_dir


def _load_verified(run_dir: Path, name: str, device) -> dict[str, torch.Tensor]:
    return load_tensors(committed_file(run_dir, name), device=device)


def load_checkpoint(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Load the last committed checkpoint of ``run_dir`` (raises ``CheckpointError``)."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise CheckpointError(f"{run_dir} is a file; pass the run directory to resume from")
    if not (run_dir / STATE_JSON).is_file():
        raise CheckpointError(
            f"{run_dir} has no {STATE_JSON}: it is not a resumable run directory (train with "
            "TrainConfig(out_dir=...) so that checkpoints are written)"
        )
    meta = read_json(run_dir / STATE_JSON)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{run_dir / STATE_JSON} has checkpoint format {meta.get('format')!r}, expected "
            f"{CHECKPOINT_FORMAT}"
        )
    files = meta.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files or STATE_FILE not in files:
        raise CheckpointError(f"{run_dir / STATE_JSON} does not list the checkpoint's files")
    model = _load_verified(run_dir, MODEL_FILE, device)
    ema = _load_verified(run_dir, EMA_FILE, device) if EMA_FILE in files else None
    state = _load_verified(run_dir, STATE_FILE, "cpu")
    return Checkpoint(model=model, ema=ema, state=state, meta=meta, path=run_dir)


# --- optimizer state <-> flat tensors + JSON ----------------------------------------------


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise CheckpointError(f"cannot store {where} = {value!r} as JSON")


def flatten_optimizer_state(
    state_dict: dict[str, Any], prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into ``prefix.<param>.<key>`` tensors and JSON.

    Returns:
        ``(tensors, meta)`` with ``meta = {"param_groups": [...], "state": {param: {key:
        value}}}`` holding the non-tensor entries.
    """
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for idx, entry in state_dict["state"].items():
        plain_state[str(idx)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{idx}.{key}"] = value
            else:
                plain_state[str(idx)][key] = _plain(value, f"{prefix}.{idx}.{key}")
    meta = {"param_groups": _plain(state_dict["param_groups"], prefix), "state": plain_state}
    return tensors, meta


def unflatten_optimizer_state(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str
) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state` (ready for ``optimizer.load_state_dict``)."""
    try:
        groups = [dict(g) for g in meta["param_groups"]]
        state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["state"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"optimizer {prefix!r}: malformed state in JSON ({exc})") from None
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    head = prefix + "."
    for key, value in tensors.items():
        if not key.startswith(head):
            continue
        idx, _, name = key[len(head) :].partition(".")
        try:
            state.setdefault(int(idx), {})[name] = value
        except ValueError:
            raise CheckpointError(f"optimizer {prefix!r}: malformed tensor key {key!r}") from None
    return {"state": state, "param_groups": groups}


# --- random number generator states ---------------------------------------------------------


def rng_state_tensors(
    data_generator: torch.Generator, device: torch.device
) -> dict[str, torch.Tensor]:
    """This process's RNG states as fixed-shape tensors (gatherable across ranks).

    Covers torch's global CPU generator, the current CUDA generator of ``device``, NumPy's
    and Python's global generators, and the trainer's data generator (dequantisation noise).
    """
    out = {
        "torch": torch.get_rng_state(),
        "data": data_generator.get_state(),
    }
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    if kind != "MT19937":  # pragma: no cover - NumPy's legacy global generator
        raise CheckpointError(f"unsupported NumPy global generator {kind!r}")
    out["numpy"] = torch.tensor([*keys.tolist(), pos, has_gauss], dtype=torch.int64)
    out["numpy_gauss"] = torch.tensor([cached], dtype=torch.float64)
    version, internal, gauss_next = random.getstate()
    out["python"] = torch.tensor([version, *internal], dtype=torch.int64)
    gauss = [0.0, 0.0] if gauss_next is None else [1.0, float(gauss_next)]
    out["python_gauss"] = torch.tensor(gauss, dtype=torch.float64)
    return out


def restore_rng_state(
    tensors: dict[str, torch.Tensor], data_generator: torch.Generator, device: torch.device
) -> None:
    """Inverse of :func:`rng_state_tensors`."""
    try:
        torch.set_rng_state(tensors["torch"].cpu())
        data_generator.set_state(tensors["data"].cpu())
        if device.type == "cuda" and "cuda" in tensors:
            torch.cuda.set_rng_state(tensors["cuda"].cpu(), device)
        np_state = tensors["numpy"].tolist()
        keys = np.array(np_state[:624], dtype=np.uint32)
        cached = float(tensors["numpy_gauss"][0])
        np.random.set_state(("MT19937", keys, int(np_state[624]), int(np_state[625]), cached))  # noqa: NPY002
        py = tensors["python"].tolist()
        flag, value = tensors["python_gauss"].tolist()
        random.setstate((int(py[0]), tuple(int(v) for v in py[1:]), value if flag else None))
    except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"malformed random-generator state in checkpoint ({exc})") from None


def committed_file(run_dir: str | os.PathLike, name: str) -> Path:
    """The committed copy of ``run_dir/name``: what :func:`load_checkpoint` would read.

    Without a commit record (a plain ``model.save`` directory) that is ``run_dir/name``.
    With one, a save that was interrupted after ``name`` was replaced but before the record
    was written has left uncommitted weights in ``name``: the copy whose digest the record
    names (``name`` or ``name.prev``) is returned instead, so ``probpath.load`` never reads
    weights the checkpoint did not commit.

    Raises:
        CheckpointError: the record names ``name`` but no copy matches its digest.
    """
    run_dir = Path(run_dir)
    if not has_checkpoint(run_dir):
        return run_dir / name
    files = read_json(run_dir / STATE_JSON).get("files", {})
    if not isinstance(files, dict):
        raise CheckpointError(f"{run_dir / STATE_JSON} does not list the checkpoint's files")
    digest = files.get(name)
    if digest is None:
        return run_dir / name
    for candidate in (run_dir / name, _prev(run_dir / name)):
        if _sha256(candidate) == digest:
            return candidate
    raise CheckpointError(
        f"{run_dir / name}: no copy matches the digest recorded in {STATE_JSON}; the checkpoint "
        "is corrupt or was modified — restart the run or restore the files"
    )
