"""Safe, atomic persistence: safetensors for tensors, JSON for everything else; never pickle.

Every write goes to a temporary file in the same folder, is fsync-ed and then renamed over
the target (``os.replace``), so an interrupted save leaves the previous file intact.
Every read refuses pickle / ``.pt`` files with a clear message and raises
:class:`CheckpointError` for malformed files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_json",
    "save_tensors",
    "tensors_to_bytes",
    "load_tensors",
    "read_json",
    "check_state_dict",
]

_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}


class CheckpointError(ValueError):
    """A checkpoint or weights file is unsafe, malformed, or does not fit the model."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False)
    return atomic_write_bytes(path, (text + "\n").encode())


def tensors_to_bytes(tensors: Mapping[str, torch.Tensor], metadata: dict | None = None) -> bytes:
    """Serialise a flat ``name -> tensor`` mapping to safetensors bytes.

    Tensors are made contiguous and moved to the CPU; shared storage is cloned.
    """
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    return st_save_bytes(flat, metadata=meta or None)


def save_tensors(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: dict | None = None
) -> Path:
    """Save a flat ``name -> tensor`` mapping as safetensors, atomically."""
    return atomic_write_bytes(path, tensors_to_bytes(tensors, metadata))


def _is_safetensors(data: bytes) -> bool:
    """A safetensors file starts with an 8-byte little-endian header length, then ``{``."""
    if len(data) < 10:
        return False
    n = int.from_bytes(data[:8], "little")
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def _refuse_pickle(path: Path, head: bytes) -> None:
    """Refuse pickle-like files: a pickle suffix, or pickle / zip magic bytes at the start."""
    looks_pickle = head[:1] == b"\x80" or head[:2] == b"PK"  # raw pickle or torch zip
    if path.suffix.lower() in _PICKLE_SUFFIXES or looks_pickle:
        raise CheckpointError(
            f"{path} looks like a pickle / torch.save file; probpath never unpickles because "
            "loading a pickle can run arbitrary code. Convert it once, in a trusted session, "
            "with safetensors.torch.save_file(state_dict, 'model.safetensors')."
        )


def load_tensors(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Read a safetensors file (refusing pickles) and check every floating tensor is finite."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; check the run directory")
    data = path.read_bytes()
    if path.suffix.lower() in _PICKLE_SUFFIXES or not _is_safetensors(data):
        _refuse_pickle(path, data[:4])
    try:
        tensors = st_load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as exc:
        raise CheckpointError(
            f"{path} is not a valid safetensors file ({exc}); it may be truncated or corrupt — "
            "use an earlier checkpoint or save again"
        ) from None
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: tensor {name!r} contains NaN or infinity")
    return {k: v.to(device) for k, v in tensors.items()}


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON object with a clear error for missing or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; is this a probpath run directory?")
    head = path.read_bytes()[:4]
    _refuse_pickle(path, head)
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(obj).__name__}")
    return obj


def check_state_dict(
    loaded: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise :class:`CheckpointError` on missing/extra keys or shape mismatches."""
    missing = sorted(set(expected) - set(loaded))
    extra = sorted(set(loaded) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{source} does not match the model: missing keys {missing[:5]}, unexpected keys "
            f"{extra[:5]}; was it saved from a model with the same configuration?"
        )
    for k, v in expected.items():
        if tuple(loaded[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: tensor {k!r} has shape {tuple(loaded[k].shape)}, the model expects "
                f"{tuple(v.shape)}; the configuration differs from the saved one"
            )
