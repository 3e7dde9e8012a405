"""Load user data files into a ``Dataset``: .npy, .npz, .csv, IDX (MNIST) and image folders.

Conventions:

* ``uint8`` arrays (8-bit images, IDX ubyte files, PNG/JPEG folders) are discrete with
  ``n_levels=256`` and ``value_range=(0, 255)``; everything else is continuous.
* Image arrays are channels-first ``(N, C, H, W)``: ``(N, H, W)`` gets a channel axis and
  ``(N, H, W, C)`` with ``C`` in (1, 3, 4) is transposed.
* Labels are non-negative integers (``num_classes = max + 1``); text labels in a CSV label
  column are numbered in sorted order.
* Nothing is unpickled (``allow_pickle=False``). Every problem raises ``ValueError`` naming
  the file and what to do.
* Files are untrusted (:mod:`probpath.data.untrusted`): regular files only, announced sizes
  checked before memory is spent, images decoded only from an allow-list of formats.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import torch

from probpath.data.dataset import Dataset
from probpath.data.untrusted import (
    IDX_DTYPES,
    check_npy_file,
    check_npy_member,
    read_idx,
    read_image,
    regular_file,
)

__all__ = [
    "load_file",
    "load_npy",
    "load_npz",
    "load_csv",
    "load_idx",
    "load_image_folder",
    "IMAGE_SUFFIXES",
    "LABEL_KEYS",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
"""File suffixes read as images (case-insensitive)."""

DATA_KEYS = ("x", "X", "data")
LABEL_KEYS = ("y", "labels", "label", "target")
"""Names of an array (.npz) or column (.csv) that holds labels."""

_FORMATS = ".npy, .npz, .csv, IDX (e.g. train-images-idx3-ubyte[.gz]) or a folder of images"


# --------------------------------------------------------------------------- helpers
def _dataset(path: Path, arr: np.ndarray, labels, *, image: bool = False) -> Dataset:
    """Validate a data array (and labels) and wrap it as a float32 ``Dataset``."""
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(
            f"{path}: data has non-numeric dtype {arr.dtype}; store numbers (convert or drop "
            "non-numeric columns first)"
        )
    if arr.ndim == 0 or arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{path}: the data is empty (shape {arr.shape}); pass at least one sample")
    if arr.ndim == 1:
        hint = "; it looks like a labels file: pass it as labels=" if image else ""
        raise ValueError(
            f"{path}: data must have at least 2 dimensions (samples first), got shape "
            f"{arr.shape}{hint}; for N one-dimensional samples reshape to (N, 1)"
        )
    if image and arr.ndim < 3:
        raise ValueError(
            f"{path}: image data must have shape (N, H, W) or (N, C, H, W), got {arr.shape}"
        )
    discrete = arr.dtype == np.uint8
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
        arr = np.moveaxis(arr, -1, 1)
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{path}: data contains {bad} NaN or infinite values; drop or impute them first"
        )
    y, num_classes = _labels(path, labels, len(x))
    return Dataset(
        x=x,
        y=y,
        name=_stem(path),
        value_range=(0.0, 255.0) if discrete else None,
        discrete=bool(discrete),
        n_levels=256 if discrete else None,
        num_classes=num_classes,
    )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".npy", ".npz", ".csv", ".idx"):
        name = name.removesuffix(suffix)
    return name or "data"


def _labels(path: Path, labels, n: int) -> tuple[torch.Tensor | None, int]:
    """Check labels: 1-D, ``n`` of them, non-negative integers. ``labels`` may be a path."""
    if labels is None:
        return None, 0
    where = f"{path}: labels"
    if isinstance(labels, str | Path):
        where = f"labels file {labels}"
        labels = _read_labels_file(Path(labels))
    arr = np.asarray(labels)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{where} must be integers, got dtype {arr.dtype}")
    arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise ValueError(f"{where} must be one integer per sample (1-D), got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"{where}: {len(arr)} labels for {n} samples; pass one label per sample")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{where} must be whole numbers (class indices), got non-integers")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError(f"{where} must be non-negative class indices 0..K-1, got {arr.min()}")
    return torch.from_numpy(arr), int(arr.max()) + 1


def _read_labels_file(path: Path) -> np.ndarray:
    if not path.exists():
        raise ValueError(f"labels file {path} does not exist; check the path")
    name = path.name.lower()
    if name.endswith(".npy"):
        return _np_load(path)
    if name.endswith(".csv"):
        table = _read_csv_table(path)
        if table.labels is not None:
            return table.labels
        if table.values.shape[1] != 1:
            raise ValueError(
                f"labels file {path} has {table.values.shape[1]} columns; "
                "use one column (or a column named label)"
            )
        return table.values[:, 0]
    return read_idx(path)


def _np_load(path: Path):
    check_npy_file(path)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ValueError(
                f"{path} holds Python objects (pickle); probpath never unpickles — save a "
                "numeric array instead"
            ) from None
        raise ValueError(f"{path} is not a readable NumPy file ({exc}); re-save it") from None
    except Exception as exc:  # truncated or foreign files raise many kinds of errors
        raise ValueError(f"{path} is not a readable NumPy file ({exc}); re-save it") from None


# --------------------------------------------------------------------------- npy / npz
def load_npy(path: str | Path, *, labels=None) -> Dataset:
    """A ``.npy`` array ``(N, ...)``; ``labels`` is an optional array or path (``(N,)``)."""
    path = Path(path)
    return _dataset(path, _np_load(path), labels)


def _npz_array(archive, key: str, path: Path) -> np.ndarray:
    if isinstance(getattr(archive, "zip", None), zipfile.ZipFile):
        check_npy_member(path, archive.zip, f"{key}.npy")
    try:
        return archive[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ValueError(
                f"{path}: array {key!r} holds Python objects (pickle); probpath never "
                "unpickles — save numeric arrays instead"
            ) from None
        raise ValueError(f"{path}: array {key!r} is unreadable ({exc}); re-save it") from None
    except Exception as exc:  # truncated members raise zipfile / zlib / OS errors
        raise ValueError(f"{path}: array {key!r} is unreadable ({exc}); re-save it") from None


def load_npz(path: str | Path, *, labels=None) -> Dataset:
    """A ``.npz`` archive: data under ``x``/``X``/``data`` (or its only array), labels
    optionally under ``y``/``labels``/``label``/``target`` (or from ``labels``)."""
    path = Path(path)
    archive = _np_load(path)
    if not hasattr(archive, "files"):  # a .npy file saved under an .npz name
        return _dataset(path, archive, labels)
    with archive:
        keys = list(archive.files)
        data_key = next((k for k in DATA_KEYS if k in keys), None)
        label_key = next((k for k in LABEL_KEYS if k in keys), None)
        if data_key is None:
            rest = [k for k in keys if k != label_key]
            if len(rest) != 1:
                raise ValueError(
                    f"{path} holds arrays {keys or '(none)'}; name the data array 'x' "
                    f"(and labels 'y') so probpath knows which is which"
                )
            data_key = rest[0]
        arr = _npz_array(archive, data_key, path)
        if labels is None and label_key is not None:
            labels = _npz_array(archive, label_key, path)
    return _dataset(path, arr, labels)


# --------------------------------------------------------------------------- csv
class _Table:
    def __init__(self, values: np.ndarray, labels: np.ndarray | None):
        self.values, self.labels = values, labels


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _read_csv_table(path: Path) -> _Table:
    regular_file(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable text CSV file ({exc})") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path} is empty; it needs at least one row of numbers")
    first = lines[0]
    delimiter = max([",", ";", "\t"], key=first.count)
    if first.count(delimiter) == 0:
        delimiter = ","
    rows = [[f.strip() for f in row] for row in csv.reader(lines, delimiter=delimiter)]
    width = len(rows[0])
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            raise ValueError(
                f"{path}: row {i} has {len(row)} fields but row 1 has {width} (ragged rows); "
                "every row needs the same number of columns"
            )
    head = rows[0]
    header = any(not _is_number(f) for f in head) and (
        len(rows) == 1 or any(_is_number(b) and not _is_number(a) for a, b in zip(head, rows[1]))
    )
    names = head if header else [f"column {j + 1}" for j in range(width)]
    body = rows[1:] if header else rows
    if not body:
        raise ValueError(f"{path} has a header but no data rows")
    label_col = None
    if header:
        lowered = [h.lower() for h in names]
        label_col = next((lowered.index(k) for k in LABEL_KEYS if k in lowered), None)
    labels = None
    if label_col is not None:
        raw = [row[label_col] for row in body]
        if all(_is_number(v) for v in raw):
            labels = np.array([float(v) for v in raw])
        else:
            classes = sorted(set(raw))
            labels = np.array([classes.index(v) for v in raw], dtype=np.int64)
    cols = [j for j in range(width) if j != label_col]
    if not cols:
        raise ValueError(f"{path} has only a label column; add the data columns")
    values = np.empty((len(body), len(cols)), dtype=np.float64)
    for i, row in enumerate(body):
        for c, j in enumerate(cols):
            field = row[j]
            if field == "":
                raise ValueError(
                    f"{path}: row {i + 1 + header}, column {names[j]!r} is empty; fill in or "
                    "drop missing values"
                )
            try:
                values[i, c] = float(field)
            except ValueError:
                raise ValueError(
                    f"{path}: column {names[j]!r} is not numeric (row {i + 1 + header}: "
                    f"{field!r}); fix missing values, drop the column, or name it 'label' "
                    "if it holds classes"
                ) from None
    return _Table(values, labels)


def load_csv(path: str | Path, *, labels=None) -> Dataset:
    """A CSV file of numbers, one sample per row.

    The delimiter (``,``, ``;`` or tab) is the most frequent of them in the first line. The
    first row is a header when it has text where the second row has numbers; a header column
    named ``label``/``labels``/``y``/``target`` (any case) holds the labels.
    """
    path = Path(path)
    table = _read_csv_table(path)
    if labels is None:
        labels = table.labels
    return _dataset(path, table.values, labels)


# --------------------------------------------------------------------------- IDX (MNIST)
def load_idx(path: str | Path, *, labels=None) -> Dataset:
    """An IDX file (MNIST format, gzipped or not): images ``(N, H, W)`` or vectors ``(N, D)``.

    Args:
        path: the images file, e.g. ``train-images-idx3-ubyte.gz``.
        labels: optional labels file (IDX ``idx1``, .npy or .csv) or array, ``(N,)``.
    """
    path = Path(path)
    return _dataset(path, read_idx(path), labels, image=True)


def _looks_like_idx(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith((".idx", "-ubyte", ".ubyte")) or "idx" in name


# --------------------------------------------------------------------------- image folders
def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_image_folder(path: str | Path, *, labels=None) -> Dataset:
    """A folder of PNG/JPEG images, or of class sub-folders of images (labels = folder index).

    Images must share one size; grey-scale folders give ``C = 1``, any colour image makes
    all images RGB (``C = 3``); alpha channels and palettes are dropped / expanded. Pixels
    are 8-bit: discrete, 256 levels in ``(0, 255)`` (16-bit and float images are refused).
    Files with other suffixes (``.txt``, ``.DS_Store``) are ignored.
    """
    path = Path(path)
    classes = sorted(d for d in path.iterdir() if d.is_dir() and _image_files(d))
    top = _image_files(path)
    if classes and top:
        raise ValueError(
            f"{path} has both images and class sub-folders; move the top-level images "
            f"(e.g. {top[0].name}) into a class folder"
        )
    if classes:
        files = [f for d in classes for f in _image_files(d)]
        folder_labels = np.array([i for i, d in enumerate(classes) for _ in _image_files(d)])
        if labels is None:
            labels = folder_labels
    else:
        files = top
    if not files:
        raise ValueError(
            f"{path} contains no images ({', '.join(IMAGE_SUFFIXES)}); point to a folder of "
            "images or of class sub-folders of images"
        )
    images = [read_image(f) for f in files]
    if any(im.ndim == 3 for im in images):
        images = [np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im for im in images]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        odd = next(i for i, im in enumerate(images) if im.shape != images[0].shape)
        raise ValueError(
            f"{path}: images differ in size ({files[0].name} is {images[0].shape[:2]}, "
            f"{files[odd].name} is {images[odd].shape[:2]}); resize them to one size"
        )
    arr = np.stack(images)
    arr = arr[:, None] if arr.ndim == 3 else np.moveaxis(arr, -1, 1)
    return _dataset(path, arr, labels, image=True)


# --------------------------------------------------------------------------- dispatch
def load_file(path: str | Path, *, labels=None) -> Dataset:
    """Load a data file or image folder, choosing the reader from the suffix.

    Args:
        path: ``.npy``, ``.npz``, ``.csv``, an IDX file (``*-ubyte``, ``*.idx``, gzipped or
            not) or a folder of images.
        labels: optional labels: an array or a file (``.npy``, ``.csv``, IDX) with one
            integer per sample; overrides labels found in the file itself.

    Returns:
        A float32 :class:`Dataset` named after the file.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist; check the path")
    if path.is_dir():
        return load_image_folder(path, labels=labels)
    regular_file(path)
    name = path.name.lower()
    if name.endswith(".npy"):
        return load_npy(path, labels=labels)
    if name.endswith(".npz"):
        return load_npz(path, labels=labels)
    if name.endswith(".csv"):
        return load_csv(path, labels=labels)
    if _looks_like_idx(path):
        return load_idx(path, labels=labels)
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ValueError(f"{path} could not be read ({exc})") from None
    if len(head) == 4 and head[:2] == b"\x00\x00" and head[2] in IDX_DTYPES:
        return load_idx(path, labels=labels)
    raise ValueError(f"{path}: unsupported file type; use {_FORMATS}")
