"""Run directories of ``probpath fit`` on the command line: the checks of ``--out`` and
``--resume`` before any work. The run record, publishing and loading are the library's
(:mod:`probpath.runs`, re-exported here).

Nothing is deleted that probpath did not write: ``run.json`` is the marker of a run
directory, and ``--overwrite`` replaces only an empty directory or one holding ``run.json``;
a ``.NAME.partial`` left by an interrupted run is kept until the user resumes or deletes it.
``--resume`` is checked up front (:func:`check_resume`): the same model, the same training
data (:func:`data_fingerprint`, a SHA-256 of the arrays) and the same options.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from probpath.core.serialization import read_json
from probpath.runs import (
    RUN_FILE,
    RunRecord,
    data_fingerprint,
    load_run,
    publish,
    read_run_record,
    staging_path,
    write_run_record,
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
