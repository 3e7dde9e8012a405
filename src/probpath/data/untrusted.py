"""Reading untrusted data files: regular files only, sizes checked before memory is spent.

Every reader of :mod:`probpath.data.files` goes through these helpers:

* :func:`regular_file` — the path (after following symlinks) must be a regular file, never a
  device, FIFO or socket (an IDX-named symlink to ``/dev/zero`` is refused before a read);
* :func:`read_idx` — the IDX header is read first and the announced size is compared with
  the file size (raw) or with a decompression allowance (gzip), and the gzip stream is read
  with a bounded ``read``: a small gzip "bomb" never expands in memory;
* :func:`check_npy_member` / :func:`check_npy_file` — the ``.npy`` header's announced size
  must fit in the bytes actually present (``.npz`` members: in the member's recorded size,
  itself within the decompression allowance);
* :func:`read_image` — Pillow decodes only the allow-listed formats :data:`IMAGE_FORMATS`
  (chosen by content, so an EPS file named ``x.png`` never reaches Ghostscript) and refuses
  images above :data:`MAX_IMAGE_PIXELS` (Pillow's own decompression-bomb limit) before
  decoding them.

Every refusal is a ``ValueError`` naming the file and what to do.
"""

from __future__ import annotations

import gzip
import math
import stat
import warnings
import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_FORMATS",
    "MAX_IMAGE_PIXELS",
    "MIN_DECOMPRESSED_ALLOWANCE",
    "MAX_COMPRESSION_RATIO",
    "decompressed_allowance",
    "regular_file",
    "read_idx",
    "check_npy_file",
    "check_npy_member",
    "read_image",
]

IMAGE_FORMATS = ("PNG", "JPEG", "BMP")
"""Pillow formats probpath decodes; anything else (EPS, PDF, SVG, ...) is refused unopened."""

MAX_IMAGE_PIXELS = 89_478_485
"""Largest image (width x height) decoded: Pillow's default decompression-bomb limit."""

MIN_DECOMPRESSED_ALLOWANCE = 64 * 2**20
"""Bytes a compressed member may always expand to (64 MiB)."""

MAX_COMPRESSION_RATIO = 100
"""Beyond the allowance, a compressed file may expand to at most this many times its size
(MNIST's gzip files expand about 5x; a 796 KiB bomb announcing 800 MiB is ~1000x)."""

IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX type codes (third magic byte) -> NumPy dtypes (big-endian on disk)."""


def decompressed_allowance(compressed_bytes: int) -> int:
    """Bytes a compressed input of ``compressed_bytes`` may expand to."""
    return max(MIN_DECOMPRESSED_ALLOWANCE, MAX_COMPRESSION_RATIO * int(compressed_bytes))


def regular_file(path: Path) -> int:
    """Check ``path`` (symlinks followed) is a regular file and return its size in bytes.

    Raises:
        ValueError: missing, unreadable, or a device / FIFO / socket.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise ValueError(f"{path} cannot be read ({exc.strerror or exc}); check the path") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"{path} is not a regular file (a device, FIFO or socket, perhaps through a "
            "symlink); point to a data file"
        )
    return st.st_size


def _too_big(path: Path, announced: int, limit: int, what: str) -> ValueError:
    return ValueError(
        f"{path}: the {what} announces {announced} bytes but only {limit} can be present; the "
        "file is truncated or corrupt (or a decompression bomb) — re-create it, or decompress "
        "it yourself if you trust it"
    )


# --------------------------------------------------------------------------- IDX
def _idx_header(path: Path, head: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES:
        raise ValueError(
            f"{path} is not an IDX file (bad magic number); expected MNIST-style "
            "idx1/idx3 ubyte data, optionally gzipped"
        )
    ndim = head[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(head) < header:
        raise ValueError(f"{path}: IDX header is truncated or has no dimensions")
    shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return IDX_DTYPES[head[2]], shape, header


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (gzipped or not), its announced size checked before the data is read."""
    size = regular_file(path)
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            head = stream.read(4)
            if len(head) == 4:
                head += stream.read(4 * head[3])
            dtype, shape, header = _idx_header(path, head)
            expected = math.prod(shape) * dtype.itemsize
            limit = decompressed_allowance(size) if gzipped else size - header
            if expected > limit:
                raise _too_big(path, expected, limit, "IDX header")
            body = stream.read(expected + 1)  # bounded: one byte more reveals trailing data
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path} could not be read ({exc}); the file may be truncated") from None
    if len(body) != expected:
        raise ValueError(
            f"{path}: IDX header announces shape {shape} ({expected} bytes) but the file holds "
            f"{len(body)}{'+' if len(body) > expected else ''} bytes; the file is truncated or "
            "corrupt"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------- npy / npz
def _npy_bytes(fh, where: str) -> int:
    """Bytes of data a ``.npy`` stream's header announces (the stream is left after it)."""
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(fh, max_header_size=10_000)
        else:
            shape, _, dtype = npy_format.read_array_header_2_0(fh, max_header_size=10_000)
    except Exception as exc:  # ValueError / OSError / SyntaxError from a malformed header
        raise ValueError(f"{where} is not a readable NumPy file ({exc}); re-save it") from None
    if dtype.hasobject:
        raise ValueError(
            f"{where} holds Python objects (pickle); probpath never unpickles — save a numeric "
            "array instead"
        )
    return math.prod(shape) * dtype.itemsize


def check_npy_file(path: Path) -> None:
    """Refuse a ``.npy`` file whose header announces more data than the file holds."""
    size = regular_file(path)
    with path.open("rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            return  # not .npy (maybe an .npz under another name): np.load decides
        fh.seek(0)
        announced = _npy_bytes(fh, str(path))
        if announced > size - fh.tell():
            raise _too_big(path, announced, size - fh.tell(), ".npy header")


def check_npy_member(path: Path, archive: zipfile.ZipFile, name: str) -> None:
    """Refuse an ``.npz`` member that would expand beyond its allowance before it is read."""
    where = f"{path}: array {name.removesuffix('.npy')!r}"
    try:
        info = archive.getinfo(name)
    except KeyError:
        return
    allowance = decompressed_allowance(info.compress_size)
    if info.file_size > allowance:
        raise _too_big(path, info.file_size, allowance, f"member {name!r}")
    try:
        with archive.open(info) as fh:
            announced = _npy_bytes(fh, where)
    except ValueError:
        raise
    except Exception as exc:  # zipfile raises OSError, BadZipFile, RuntimeError (encrypted),
        # NotImplementedError (unknown compression), zlib.error, EOFError, ...
        raise ValueError(f"{where} is unreadable ({exc}); re-save it") from None
    if announced > info.file_size:
        raise _too_big(path, announced, info.file_size, f"header of {name!r}")


# --------------------------------------------------------------------------- images
def read_image(path: Path) -> np.ndarray:
    """Decode an allow-listed image to ``uint8`` ``(H, W)`` (grey) or ``(H, W, 3)`` (RGB).

    Raises:
        ValueError: not a regular file, a format outside :data:`IMAGE_FORMATS`, too many
            pixels, a 16-bit / float image, or undecodable content.
    """
    from PIL import Image

    regular_file(path)
    try:
        with warnings.catch_warnings():  # the size is checked (and refused) below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path, formats=list(IMAGE_FORMATS))
        with img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"{path} is {width}x{height} pixels, above the decompression-bomb limit of "
                    f"{MAX_IMAGE_PIXELS}; resize it"
                )
            if img.mode.startswith(("I", "F")):
                raise ValueError(
                    f"{path} is a {img.mode} image (16-bit or float); convert it to 8-bit "
                    "grey or RGB"
                )
            img.load()
            mode = "L" if img.mode in ("1", "L", "LA") else "RGB"
            return np.asarray(img.convert(mode), dtype=np.uint8)
    except ValueError:
        raise
    except Exception as exc:  # UnidentifiedImageError, DecompressionBombError, OSError, ...
        raise ValueError(
            f"{path} is not a readable image (allowed formats: {', '.join(IMAGE_FORMATS)}; "
            f"{exc}); remove or replace it"
        ) from None
