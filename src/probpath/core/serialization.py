"""Safe, atomic persistence: safetensors for tensors, JSON for everything else; never pickle.

Every write goes to a temporary file in the same folder, is fsync-ed and then renamed over
the target (``os.replace``), so an interrupted save leaves the previous file intact.
Every read refuses pickle / ``.pt`` files with a clear message and raises
:class:`CheckpointError` for malformed files. Reads are bounded: only regular files, JSON up
to :data:`MAX_JSON_BYTES` (deep nesting refused), and a safetensors file's header is read
and checked — dtypes, shapes, offsets, and (when the caller knows them) the expected keys,
shapes and dtypes — before any weight is read (:func:`read_safetensors_header`).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
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
    "TensorInfo",
    "read_safetensors_header",
    "remove_stale_temp_files",
    "MAX_JSON_BYTES",
]

MAX_JSON_BYTES = 16 * 2**20
"""Largest config.json / run.json / trainer_state.json read (16 MiB)."""

_MAX_HEADER_BYTES = 100 * 2**20  # the safetensors format's own limit on its JSON header

# safetensors dtype names -> (bytes per element, kind): "float" real floats (weights),
# "int" integers and booleans (counters, RNG states); anything else is refused.
_ST_DTYPES: dict[str, tuple[int, str]] = {
    "F64": (8, "float"), "F32": (4, "float"), "F16": (2, "float"), "BF16": (2, "float"),
    "I64": (8, "int"), "I32": (4, "int"), "I16": (2, "int"), "I8": (1, "int"),
    "U64": (8, "int"), "U32": (4, "int"), "U16": (2, "int"), "U8": (1, "int"),
    "BOOL": (1, "int"),
}  # fmt: skip
_TORCH_TO_ST = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip

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


@dataclass(frozen=True)
class TensorInfo:
    """One entry of a safetensors header: dtype name (``"F32"``, ...) and shape."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        """``"float"`` (real floating point), ``"int"`` (integers, booleans) or ``"?"``."""
        return _ST_DTYPES.get(self.dtype, (0, "?"))[1]

    @classmethod
    def of(cls, tensor: torch.Tensor) -> TensorInfo:
        """The header entry ``tensor`` would have (complex and float8 map to ``"?"``)."""
        return cls(_TORCH_TO_ST.get(tensor.dtype, "?"), tuple(tensor.shape))


def _regular_size(path: Path) -> int:
    try:
        st = path.stat()
    except OSError:
        raise CheckpointError(f"{path} does not exist; check the run directory") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path} is not a regular file (a device, FIFO or socket)")
    return st.st_size


def _parse_header(path: Path, data_size: int, header: dict) -> dict[str, TensorInfo]:
    infos: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where} has a malformed header entry")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _ST_DTYPES:
            raise CheckpointError(
                f"{where} has dtype {dtype!r}; probpath reads real floating-point weights "
                "(F64/F32/F16/BF16) and integer counters only (complex and float8 are "
                "refused) — save the tensor as float32"
            )
        ok_shape = isinstance(shape, list) and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        )
        ok_offsets = (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        )
        if not ok_shape or not ok_offsets:
            raise CheckpointError(f"{where} has a malformed shape or offsets in the header")
        nbytes = math.prod(shape) * _ST_DTYPES[dtype][0]
        if not 0 <= offsets[0] <= offsets[1] <= data_size or offsets[1] - offsets[0] != nbytes:
            raise CheckpointError(
                f"{where}: its header announces {nbytes} bytes at {offsets} but the file "
                f"holds {data_size}; the file is truncated or corrupt"
            )
        infos[name] = TensorInfo(dtype, tuple(shape))
    return infos


def read_safetensors_header(path: str | os.PathLike) -> dict[str, TensorInfo]:
    """Read and check a safetensors header without reading any tensor data.

    Raises:
        CheckpointError: not a regular file, a pickle, a malformed header, a refused dtype
            (complex, float8, unknown) or offsets outside the file.
    """
    path = Path(path)
    size = _regular_size(path)
    with path.open("rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        if path.suffix.lower() in _PICKLE_SUFFIXES or not 2 <= n <= min(
            _MAX_HEADER_BYTES, size - 8
        ):
            _refuse_pickle(path, head)
            raise CheckpointError(
                f"{path} is not a valid safetensors file (header length {n} for a file of "
                f"{size} bytes); it may be truncated or corrupt — use an earlier checkpoint"
            )
        text = fh.read(n)
    if text[:1] != b"{":
        _refuse_pickle(path, head)
    header = _json_object(path, text, "safetensors header")
    return _parse_header(path, size - 8 - n, header)


def _check_expected(
    path: Path, infos: Mapping[str, TensorInfo], expected: Mapping[str, TensorInfo]
) -> None:
    missing, extra = sorted(set(expected) - set(infos)), sorted(set(infos) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{path} does not match the configuration: missing tensors {missing[:5]}, "
            f"unexpected tensors {extra[:5]}; was it saved from a model with this config.json?"
        )
    for key, want in expected.items():
        got = infos[key]
        if got.shape != want.shape:
            raise CheckpointError(
                f"{path}: tensor {key!r} has shape {got.shape}, the configuration implies "
                f"{want.shape}; the configuration differs from the saved one"
            )
        if got.kind != want.kind or (want.kind == "int" and got.dtype != want.dtype):
            raise CheckpointError(
                f"{path}: tensor {key!r} has dtype {got.dtype}, the model expects "
                f"{want.dtype}; probpath does not cast weights silently — re-save them"
            )


def load_tensors(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    expected: Mapping[str, TensorInfo] | None = None,
) -> dict[str, torch.Tensor]:
    """Read a safetensors file, checking its header before any tensor is read.

    Args:
        path: the file (pickles are refused).
        device: where to put the tensors.
        expected: the keys, shapes and dtypes the caller's configuration implies; with it,
            missing / extra / mis-shaped tensors and a float-vs-integer mismatch are refused
            before the data is read.

    Raises:
        CheckpointError: naming the file and the tensor, for every refusal; floating tensors
            must be finite.
    """
    path = Path(path)
    infos = read_safetensors_header(path)
    if expected is not None:
        _check_expected(path, infos, expected)
    data = path.read_bytes()
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


def _json_object(path: Path, text: bytes, what: str) -> dict:
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({what}: {exc})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: the JSON ({what}) is nested too deeply") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(obj).__name__}")
    return obj


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON object (a regular file of at most :data:`MAX_JSON_BYTES`), clear errors."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; is this a probpath run directory?")
    size = _regular_size(path)
    if size > MAX_JSON_BYTES:
        raise CheckpointError(f"{path} is {size} bytes, above {MAX_JSON_BYTES}: not probpath's")
    data = path.read_bytes()
    _refuse_pickle(path, data[:4])
    return _json_object(path, data, "JSON")


_TEMP = re.compile(r"^\.[^/]+\.(?:[a-z0-9_]{8}|prev)\.tmp$")


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove temp files an interrupted :func:`atomic_write_bytes` left in ``directory``.

    Only regular files named ``.NAME.XXXXXXXX.tmp`` (``mkstemp``'s 8 characters) or
    ``.NAME.prev.tmp`` (the checkpoint's hard links) are removed; call it when no other
    process writes into ``directory``.
    """
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        if _TEMP.match(p.name) and p.is_file() and not p.is_symlink():
            p.unlink()
            removed.append(p)
    return removed


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
        if loaded[k].is_complex() or v.is_floating_point() != loaded[k].is_floating_point():
            raise CheckpointError(
                f"{source}: tensor {k!r} has dtype {loaded[k].dtype}, the model expects "
                f"{v.dtype}; probpath does not cast weights silently — re-save them"
            )
        if tuple(loaded[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: tensor {k!r} has shape {tuple(loaded[k].shape)}, the model expects "
                f"{tuple(v.shape)}; the configuration differs from the saved one"
            )
