"""Run directories of ``probpath fit``: the run record (``run.json``), atomic publishing and
loading back — the library's side, used by the CLI, ``probpath.load`` and
:class:`~probpath.compare.runmodel.RunModel` (the command-line checks of ``--out`` and
``--resume`` stay in :mod:`probpath.cli.rundir`).

A run directory holds what the Trainer (or ``Estimator.save``) writes — ``config.json``,
``model.safetensors`` and, for neural models, ``ema.safetensors``, trainer state and
``metrics.jsonl`` — plus ``run.json``: which catalog model and data set were used and the
:class:`~probpath.compare.DataSpace` that maps the data to the model's input, so that
``probpath sample`` returns samples in the data's own space and ``probpath evaluate`` scores
the model exactly as ``compare`` does.

``fit`` builds the directory under a hidden ``.NAME.partial`` sibling (:func:`staging_path`)
and renames it into place (:func:`publish`) only when everything is written: an interrupted
or failed run leaves no half-written run directory behind. ``run.json`` is the marker of a
run directory; nothing is deleted that probpath did not write.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probpath.core.serialization import (
    CheckpointError,
    atomic_write_json,
    load_tensors,
    read_json,
)

if TYPE_CHECKING:  # compare/ sits above; DataSpace is imported where a record is read
    from probpath.compare.space import DataSpace

__all__ = [
    "RUN_FILE",
    "RunRecord",
    "data_fingerprint",
    "load_run",
    "publish",
    "read_run_record",
    "staging_path",
    "write_run_record",
]

RUN_FILE = "run.json"
_RUN_VERSION = 1


@dataclass
class RunRecord:
    """What ``run.json`` stores.

    Attributes:
        model: catalog name.
        data: the data set's name, or the absolute path of the data file.
        n / seed / holdout: how the data was drawn and split (``holdout`` = held-out share).
        space: the data-to-model map.
        num_classes: label classes of the data (0 without labels).
        fit: training facts (seconds, steps, final_loss, used_ema, device, options).
        fingerprint: SHA-256 of the training data (:func:`data_fingerprint`).
    """

    model: str
    data: str
    space: DataSpace
    n: int | None = None
    seed: int = 0
    holdout: float = 0.0
    num_classes: int = 0
    fit: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": _RUN_VERSION,
            "model": self.model,
            "data": self.data,
            "n": self.n,
            "seed": self.seed,
            "holdout": self.holdout,
            "num_classes": self.num_classes,
            "space": self.space.to_dict(),
            "fit": self.fit,
            "fingerprint": self.fingerprint,
        }


def write_run_record(directory: str | Path, record: RunRecord) -> Path:
    """Write ``run.json`` atomically."""
    return atomic_write_json(Path(directory) / RUN_FILE, record.to_dict())


def read_run_record(directory: str | Path) -> RunRecord | None:
    """The run record of ``directory``; ``None`` for a plain ``model.save`` directory.

    Raises:
        CheckpointError: ``run.json`` exists but is malformed.
    """
    path = Path(directory) / RUN_FILE
    if not path.exists():
        return None
    from probpath.compare.space import DataSpace

    d = read_json(path)
    if d.get("format_version") != _RUN_VERSION:
        raise CheckpointError(f"{path}: unknown format_version {d.get('format_version')!r}")
    try:
        return RunRecord(
            model=str(d["model"]),
            data=str(d["data"]),
            space=DataSpace.from_dict(d["space"]),
            n=None if d.get("n") is None else int(d["n"]),
            seed=int(d.get("seed", 0)),
            holdout=float(d.get("holdout", 0.0)),
            num_classes=int(d.get("num_classes", 0)),
            fit=dict(d.get("fit") or {}),
            fingerprint=None if d.get("fingerprint") is None else str(d["fingerprint"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is malformed ({exc}); fit the model again") from None


def data_fingerprint(x, y=None) -> str:
    """SHA-256 of the training data (values, dtype and shape of ``x`` and of the labels)."""
    h = hashlib.sha256()
    for t in (x, y):
        if t is None:
            h.update(b"none")
            continue
        arr = t.detach().cpu().contiguous().numpy()
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def staging_path(final: Path) -> Path:
    """The hidden sibling a run is built in (the same path on every ``torchrun`` rank)."""
    return final.parent / f".{final.name}.partial"


def publish(staging: Path, final: Path) -> Path:
    """Move the finished ``staging`` directory to ``final`` (replacing an old run)."""
    old = final.parent / f".{final.name}.old"
    if old.exists():  # left by an interrupted publish: an old run, or not ours to delete
        if not (old / RUN_FILE).is_file():
            raise ValueError(f"{old} is in the way and is not a probpath run; move it away")
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_run(
    directory: str | Path, device: str = "cpu", weights: str = "auto", max_params: int | None = None
):
    """Load the model of a run directory (or of a ``model.save`` directory).

    Args:
        directory: the run directory.
        device: where to put the model.
        weights: "auto" (the EMA weights when ``fit`` evaluated with them), "ema" or
            "model".
        max_params: bound on the model's tensor elements (``None``: probpath's default).

    Returns:
        ``(model, record)``; ``record`` is ``None`` without ``run.json``.

    Raises:
        CheckpointError: missing, malformed or unsafe files.
        ValueError: ``weights="ema"`` for a run without EMA weights.
    """
    from probpath.core.limits import DEFAULT_MAX_PARAMS
    from probpath.core.serialization import TensorInfo
    from probpath.io import load
    from probpath.training.checkpoint import EMA_FILE, committed_file

    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"{directory} does not exist; pass the --out directory of fit")
    record = read_run_record(directory)
    model = load(
        directory, device=device, space="model", max_params=max_params or DEFAULT_MAX_PARAMS
    )
    ema_path = directory / EMA_FILE
    use_ema = weights == "ema" or (
        weights == "auto" and record is not None and bool(record.fit.get("used_ema"))
    )
    if use_ema:
        if not ema_path.is_file() or not hasattr(model, "load_weights"):
            raise ValueError(f"{directory} has no EMA weights; use --weights model")
        expected = {k: TensorInfo.of(v) for k, v in model.state_dict().items()}
        ema_path = committed_file(directory, EMA_FILE)
        model.load_weights(load_tensors(ema_path, device, expected), str(ema_path))
        model.eval()
    return model, record
