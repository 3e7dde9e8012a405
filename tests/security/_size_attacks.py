"""The size-attack files of issue #13, built on demand, and a child that loads one of them.

Shared by ``test_size_attacks.py`` (peak memory of the refusals, in a subprocess) and
``benchmarks/security_rss.py`` (peak RSS before / after the fix). Each builder writes a small
file that announces a large allocation:

=================  ==========================================================  ============
case               file                                                        announces
=================  ==========================================================  ============
idx_gzip_bomb      gzipped IDX, header 1_070_000 x 28 x 28 uint8 + zeros       800 MiB
idx_dev_zero       IDX-named symlink to /dev/zero                              unbounded
npy_header         .npy header (10**10, 2) float64 over 16 bytes               149 GiB
npz_bomb           .npz member of 200 MiB of zeros (deflated ~200 KiB)         200 MiB
config_1_6gb       cfm config.json, hidden [20000, 20000] (4e8 weights)        1.6 GB
config_width_1e9   cfm config.json, hidden [10**9]                             8 GB
config_steps_1e11  ddpm config.json, num_steps 10**11                          800 GB
=================  ==========================================================  ============
"""

from __future__ import annotations

import gzip
import io
import json
import resource
import struct
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["CASES", "build", "build_honest_run", "child_main"]


def _idx_gzip_bomb(d: Path) -> Path:
    shape = (1_070_000, 28, 28)
    path = d / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(bytes([0, 0, 0x08, 3]) + b"".join(struct.pack(">I", s) for s in shape))
        chunk = b"\x00" * 2**20
        for _ in range(1_070_000 * 28 * 28 // 2**20):
            fh.write(chunk)
        fh.write(b"\x00" * (1_070_000 * 28 * 28 % 2**20))
    return path


def _idx_dev_zero(d: Path) -> Path:
    path = d / "zeros-idx3-ubyte"
    path.symlink_to("/dev/zero")
    return path


def _npy_header(d: Path) -> Path:
    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (10**10, 2)}
    )
    path = d / "big.npy"
    path.write_bytes(buf.getvalue() + b"\x00" * 16)
    return path


def _npz_bomb(d: Path) -> Path:
    import numpy as np

    n = 200 * 2**20
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (n // 8, 8)}
    )
    path = d / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as fh:
            fh.write(header.getvalue())
            for _ in range(n // 2**20):
                fh.write(b"\x00" * 2**20)
    return path


def _run(d: Path, name: str, change: Callable[[dict], None]) -> Path:
    """A saved quick model with one config change (weights of the honest model kept)."""
    from probpath.catalog import build_model, get_entry

    run = build_model(get_entry(name), (2,), None, quick=True).save(d / f"{name}-run")
    meta = json.loads((run / "config.json").read_text())
    change(meta["config"])
    (run / "config.json").write_text(json.dumps(meta))
    return run


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "idx_gzip_bomb": (_idx_gzip_bomb, "data"),
    "idx_dev_zero": (_idx_dev_zero, "data"),
    "npy_header": (_npy_header, "data"),
    "npz_bomb": (_npz_bomb, "data"),
    "config_1_6gb": (
        lambda d: _run(d, "cfm", lambda c: c.update(network={"hidden": [20000, 20000]})),
        "run",
    ),
    "config_width_1e9": (
        lambda d: _run(d, "cfm", lambda c: c.update(network={"hidden": [10**9]})),
        "run",
    ),
    "config_steps_1e11": (lambda d: _run(d, "ddpm", lambda c: c.update(num_steps=10**11)), "run"),
}
"""case name -> (builder(directory) -> path, "data" | "run")."""


def build_honest_run(directory: Path) -> str:
    """A saved quick cfm model, unchanged: the baseline of the ``run`` cases."""
    return str(_run(directory, "cfm", lambda c: None))


def build(case: str, directory: Path) -> Path:
    """Write the file(s) of ``case`` under ``directory`` and return the path to load."""
    directory.mkdir(parents=True, exist_ok=True)
    return CASES[case][0](directory)


def child_main(argv: list[str]) -> None:
    """``python _size_attacks.py KIND PATH [KIND PATH ...]``: load each, print peak RSS.

    Prints one line per load: ``<outcome> <peak KiB>`` where outcome is ``ok`` or the
    exception's type name. The baseline line ``imported <KiB>`` comes first.
    """
    import probpath

    print("imported", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
    for kind, path in zip(argv[::2], argv[1::2], strict=True):
        try:
            (probpath.load_dataset if kind == "data" else probpath.load)(path)
            outcome = "ok"
        except BaseException as exc:  # noqa: BLE001 - the outcome is what is measured
            outcome = type(exc).__name__
        print(outcome, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)


if __name__ == "__main__":
    child_main(sys.argv[1:])
