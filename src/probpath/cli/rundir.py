"""Run directories of ``probpath fit``: the run record, atomic publishing, loading back.

A run directory holds what the Trainer (or ``Estimator.save``) writes — ``config.json``,
``model.safetensors`` and, for neural models, ``ema.safetensors``, trainer state and
``metrics.jsonl`` — plus ``run.json``: which catalog model and data set were used and the
:class:`~probpath.compare.DataSpace` that maps the data to the model's input, so that
``probpath sample`` returns samples in the data's own space and ``probpath evaluate`` scores
the model exactly as ``compare`` does.

``fit`` builds the directory under a hidden ``.NAME.partial`` sibling and renames it into
place only when everything is written: an interrupted or failed run leaves no half-written
run directory behind.

Nothing is deleted that probpath did not write: ``run.json`` is the marker of a run
directory, and ``--overwrite`` replaces only an empty directory or one holding ``run.json``;
a ``.NAME.partial`` left by an interrupted run is kept until the user resumes or deletes it.
``--resume`` is checked up front (:func:`check_resume`): the same model, the same training
data (:func:`data_fingerprint`, a SHA-256 of the arrays) and the same options.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probpath.compare import DataSpace
from probpath.core.serialization import (
    CheckpointError,
    atomic_write_json,
    load_tensors,
    read_json,
)

__all__ = [
    "RUN_FILE",
    "RunRecord",
    "write_run_record",
    "read_run_record",
    "staging_path",
    "publish",
    "check_output_dir",
    "check_resume",
    "data_fingerprint",
    "load_run",
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


def _writable_parent(path: Path, flag: str) -> None:
    probe = path.parent if path.parent != Path("") else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write under {probe}; choose another {flag}")


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Check ``--out`` before any work: writable, and never replacing what is not a run.

    An existing non-empty ``path`` needs ``overwrite`` and must be a probpath run (hold
    ``run.json``); a ``.NAME.partial`` of an interrupted run must be resumed or deleted.
    """
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file; choose a directory name")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise ValueError(
                f"--out {path} already exists and is not empty; choose another --out or pass "
                "--overwrite"
            )
        if not (path / RUN_FILE).is_file():
            raise ValueError(
                f"--out {path} is not a probpath run directory (no {RUN_FILE}); --overwrite "
                "only replaces runs written by probpath fit — choose another --out"
            )
    staging = staging_path(path)
    if staging.exists():
        raise ValueError(
            f"{staging} holds an interrupted run; continue it with --resume {staging}, or "
            f"delete it (rm -r {staging}) to start afresh"
        )
    _writable_parent(path, "--out")


def check_resume(
    resume: Path,
    model: str,
    class_name: str,
    options: dict[str, Any],
    fingerprint: str,
    *,
    anyway: bool = False,
) -> Path:
    """Check ``--resume`` before any work and return the run's final directory.

    With ``anyway`` (``--resume-anyway``) other training data or options only warn (e.g. to
    fine-tune a run on new data); the model class must still match, and the weights are
    still checked against the new configuration when they are loaded.

    Raises:
        ValueError: no checkpoint, a different model, or (without ``anyway``) different
            training data or options.
    """
    from probpath.training.checkpoint import has_checkpoint

    if not has_checkpoint(resume):
        raise ValueError(
            f"--resume {resume} holds no trainer checkpoint (estimators are refitted, not "
            "resumed); start a new run with --out instead"
        )
    saved = read_json(Path(resume) / "config.json").get("class")
    if saved != class_name:
        raise ValueError(f"--resume {resume} is a {saved} run, not {model!r}; give the same model")
    record = read_run_record(resume)
    if record is not None:
        problems = []
        if record.fingerprint is not None and record.fingerprint != fingerprint:
            problems.append(
                f"--resume {resume} was trained on other data (--data, --n, --seed or --holdout "
                "differ); give the same data"
            )
        was = {"options": record.fit.get("options", {}), "quick": record.fit.get("quick")}
        if was != options:
            problems.append(
                f"--resume {resume} was started with {was}, not {options}; give the same options"
            )
        for problem in problems:
            if not anyway:
                raise ValueError(
                    f"{problem}, start a new run with --out, or continue on purpose with "
                    "--resume-anyway"
                )
            warnings.warn(f"{problem}; continuing (--resume-anyway)", stacklevel=2)
    target = Path(resume)
    if target.name.startswith(".") and target.name.endswith(".partial"):
        target = target.parent / target.name[1 : -len(".partial")]
    _writable_parent(target, "--resume")
    return target


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
