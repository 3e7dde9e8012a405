"""Issue #13, causes 1 and 3 (files): decoders from an allow-list, sizes checked before reading.

Each test reproduces one hostile case of the issue and checks the refusal comes *before* the
dangerous step: the EPS decoder is never entered, the announced size is compared with what
can be present before a byte of data is allocated, and devices are never opened.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from probpath.data import load_dataset
from probpath.data.untrusted import (
    MAX_COMPRESSION_RATIO,
    MAX_IMAGE_PIXELS,
    MIN_DECOMPRESSED_ALLOWANCE,
    decompressed_allowance,
)

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n%%EOF\n"


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR announces ``width x height`` grey pixels, with a one-row IDAT.

    PNG layout: 8-byte signature, then chunks ``length | type | data | crc32(type + data)``.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- cause 1
def test_eps_named_png_is_refused_before_any_eps_code_runs(tmp_path, monkeypatch):
    """Pillow picks the decoder from the content: without the allow-list this file opens as
    EPS (and ``load`` would run Ghostscript). The EPS plugin must never be entered."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(_png_bytes(np.zeros((8, 8), np.uint8)))
    (folder / "x.png").write_bytes(EPS)
    with Image.open(folder / "x.png") as img:  # the attack is real: Pillow sees an EPS
        assert img.format == "EPS"
    entered = []

    def trap(*args, **kwargs):
        entered.append(args)
        raise AssertionError("EPS code reached")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", trap)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", trap)
    with pytest.raises(ValueError, match=r"x\.png is not a readable image.*PNG, JPEG, BMP"):
        load_dataset(folder)
    assert entered == []


def test_image_above_the_decompression_bomb_limit_is_refused_before_decoding(tmp_path):
    """10_000 x 10_000 = 1e8 pixels > MAX_IMAGE_PIXELS (89_478_485, Pillow's limit); the
    file is a few hundred bytes, so decoding it would be the first large allocation."""
    assert 10_000 * 10_000 > MAX_IMAGE_PIXELS
    folder = tmp_path / "bomb"
    folder.mkdir()
    (folder / "big.png").write_bytes(_png_header_only(10_000, 10_000))
    with pytest.raises(ValueError, match=r"decompression-bomb limit"):
        load_dataset(folder)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("name", ["zeros-idx3-ubyte", "zeros.npy", "zeros.csv", "zeros.npz"])
def test_symlink_to_a_device_is_refused_without_reading(tmp_path, name):
    """An IDX-named (or any data-named) symlink to /dev/zero: refused by the file type."""
    link = tmp_path / name
    link.symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="not a regular file"):
        load_dataset(link)


# ----------------------------------------------------------------------------- cause 3 (files)
def test_gzip_idx_bomb_is_refused_from_its_header(tmp_path):
    """The issue's case: a gzipped IDX header announcing 1_070_000 x 28 x 28 uint8 bytes
    (838,880,000 B = 800 MiB) while the compressed file is a few KiB. The allowance is
    max(64 MiB, 100 x compressed size), far below 800 MiB, so the header alone refuses it."""
    shape = (1_070_000, 28, 28)
    header = bytes([0, 0, 0x08, 3]) + b"".join(struct.pack(">I", s) for s in shape)
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + b"\x00" * 4096))
    assert 1_070_000 * 28 * 28 > decompressed_allowance(path.stat().st_size)
    with pytest.raises(ValueError, match="decompression bomb"):
        load_dataset(path)


def test_raw_idx_header_larger_than_the_file_is_refused(tmp_path):
    """Raw IDX: announced bytes (2**31 x 1 uint8) vs the bytes after the header (16)."""
    header = bytes([0, 0, 0x08, 2]) + struct.pack(">II", 2**31 - 1, 1)
    path = tmp_path / "big-idx2-ubyte"
    path.write_bytes(header + b"\x00" * 16)
    with pytest.raises(ValueError, match="announces 2147483647 bytes but only 16"):
        load_dataset(path)


def test_npy_header_larger_than_the_file_is_refused(tmp_path):
    """A .npy header announcing (10**10, 2) float64 = 1.6e11 B over 16 B of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (10**10, 2)}
    )
    path = tmp_path / "big.npy"
    path.write_bytes(buf.getvalue() + b"\x00" * 16)
    with pytest.raises(ValueError, match=r"announces 160000000000 bytes"):
        load_dataset(path)


def test_npz_member_bomb_is_refused_from_the_zip_directory(tmp_path):
    """An .npz member of 200 MiB of zeros deflates to ~200 KiB: its recorded size exceeds
    max(64 MiB, 100 x compressed), so it is refused before it is inflated."""
    path = tmp_path / "bomb.npz"
    n = 200 * 2**20
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (n // 8, 8)}
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as fh:
            fh.write(header.getvalue())
            chunk = b"\x00" * 2**20
            for _ in range(n // 2**20):
                fh.write(chunk)
    info = zipfile.ZipFile(path).getinfo("x.npy")
    assert info.file_size > max(
        MIN_DECOMPRESSED_ALLOWANCE, MAX_COMPRESSION_RATIO * info.compress_size
    )
    with pytest.raises(ValueError, match="decompression bomb"):
        load_dataset(path)


def test_legitimate_gzip_idx_still_loads(tmp_path):
    """A real (small) gzipped IDX file round-trips: the bounds do not refuse honest data."""
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    header = bytes([0, 0, 0x08, 3]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    path = tmp_path / "ok-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + arr.tobytes()))
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.x[:, 0].numpy(), arr.astype(np.float32))
