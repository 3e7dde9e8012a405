"""Fuzz every file loader: a typed error or a valid result, never a crash, hang or blow-up.

For each loader (npy, npz, csv, IDX, images, safetensors, config.json, run.json) Hypothesis
mutates a valid file (bit flips, truncations, insertions, extreme bytes; structured JSON
values for the JSON files) and the loader must either return a valid result or raise
``ValueError`` — the base of probpath's typed errors (``CheckpointError``,
``ResourceLimitError``). Any other exception is a crash.

The examples run in a child process (``test_fuzz_in_a_child_with_bounded_memory``) so that
its peak RSS measures them alone; the bound is 1.5 GiB for the child (Python, torch and
pytest take ~0.5 GiB; every accepted file here is < 1 MiB, so a loader that allocated what
a mutated header announces would exceed it). Hypothesis is derandomized (same examples
every run) with ``max_examples`` per loader set by ``FUZZ_EXAMPLES`` (default 60) and a
per-example deadline of 30 s (a hang fails; the child has a 600 s timeout).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import probpath
from probpath.cli.rundir import load_run
from probpath.core.serialization import load_tensors
from probpath.data import load_dataset

IN_CHILD = os.environ.get("PROBPATH_FUZZ_CHILD") == "1"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=30_000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
child_only = pytest.mark.skipif(not IN_CHILD, reason="runs inside the memory-bounded child")


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` after 1-8 random edits: flip a bit, truncate, insert bytes, set an extreme."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "extreme"]))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF]))
    return bytes(data)


def typed(fn, *args):
    """Call ``fn``; a ``ValueError`` (probpath's typed errors) is a refusal, not a crash."""
    try:
        return fn(*args)
    except ValueError:
        return None


def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(10, dtype=np.float64).reshape(5, 2))
    return buf.getvalue()


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=np.ones((4, 3), np.float32), y=np.array([0, 1, 0, 1]))
    return buf.getvalue()


def _idx_bytes() -> bytes:
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    return (
        bytes([0, 0, 0x08, 3]) + b"".join(struct.pack(">I", s) for s in arr.shape) + arr.tobytes()
    )


def _image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4)).save(buf, format=fmt)
    return buf.getvalue()


def _write(directory: str, name: str, data: bytes) -> Path:
    path = Path(directory) / name
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- data files
_FILES = {
    "x.npy": _npy_bytes(),
    "x.npz": _npz_bytes(),
    "x.csv": b"a,b,label\n1.5,2,0\n3,-4e3,1\nnan,5,1\n",
    "x-idx3-ubyte": _idx_bytes(),
    "x-idx3-ubyte.gz": _idx_bytes(),  # mutated, then gzipped
}


@child_only
@pytest.mark.parametrize("name", list(_FILES))
@FUZZ
@given(data=st.data())
def test_fuzz_data_files(name, data):
    """npy, npz, csv and IDX (raw and gzipped): one Hypothesis run per file type."""
    blob = data.draw(mutated(_FILES[name]))
    with tempfile.TemporaryDirectory() as d:
        typed(load_dataset, _write(d, name, gzip.compress(blob) if name.endswith(".gz") else blob))


@child_only
@FUZZ
@given(
    data=st.one_of(
        mutated(_image_bytes("PNG")), mutated(_image_bytes("JPEG")), mutated(_image_bytes("BMP"))
    )
)
def test_fuzz_images(data):
    with tempfile.TemporaryDirectory() as d:
        _write(d, "a.png", _image_bytes("PNG"))
        _write(d, "b.png", data)
        typed(load_dataset, Path(d))


# ----------------------------------------------------------------------------- runs
def _saved(name: str) -> dict[str, bytes]:
    """The files of a saved quick model on 2-D data (fitted when it is an estimator)."""
    from probpath.catalog import build_model, get_entry

    torch.manual_seed(0)
    model = build_model(get_entry(name), (2,), None, quick=True)
    if model.capabilities.estimator:
        model.fit(torch.randn(50, 2, dtype=torch.float64))
    with tempfile.TemporaryDirectory() as d:
        model.save(d)
        return {p.name: p.read_bytes() for p in Path(d).iterdir()}


_RUNS = {name: _saved(name) for name in ("gmm", "realnvp")} if IN_CHILD else {}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _load_with(files: dict[str, bytes]):
    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            _write(d, name, data)
        return typed(probpath.load, d)


@child_only
@FUZZ
@given(name=st.sampled_from(["gmm", "realnvp"]), data=st.data())
def test_fuzz_safetensors(name, data):
    files = dict(_RUNS[name])
    files["model.safetensors"] = data.draw(mutated(files["model.safetensors"]))
    _load_with(files)
    with tempfile.TemporaryDirectory() as d:
        typed(load_tensors, _write(d, "w.safetensors", files["model.safetensors"]))


@child_only
@FUZZ
@given(name=st.sampled_from(["gmm", "realnvp"]), data=st.data())
def test_fuzz_config_json(name, data):
    files = dict(_RUNS[name])
    if data.draw(st.booleans()):  # bytes-level damage
        files["config.json"] = data.draw(mutated(files["config.json"]))
    else:  # structured: one value of "config" or "state" replaced by any JSON value
        meta = json.loads(files["config.json"])
        part = data.draw(st.sampled_from([k for k in ("config", "state") if k in meta]))
        key = data.draw(st.sampled_from(sorted(meta[part]) + ["__dict__", "extra_"]))
        meta[part][key] = data.draw(json_values)
        files["config.json"] = json.dumps(meta).encode()
    _load_with(files)


_RUN_JSON = {
    "format_version": 1, "model": "gmm", "data": "moons", "n": 50, "seed": 0, "holdout": 0.1,
    "num_classes": 0, "fit": {"used_ema": False}, "fingerprint": None,
    "space": {"event_shape": [2], "flatten": False, "scale": 1.0, "shift": 0.0,
              "discrete": False, "n_levels": None, "value_range": None},
}  # fmt: skip


@child_only
@FUZZ
@given(data=st.data())
def test_fuzz_run_json(data):
    record = json.loads(json.dumps(_RUN_JSON))
    if data.draw(st.booleans()):
        raw = data.draw(mutated(json.dumps(record).encode()))
    else:
        part = data.draw(st.sampled_from([record, record["space"]]))
        part[data.draw(st.sampled_from(sorted(part)))] = data.draw(json_values)
        raw = json.dumps(record).encode()
    with tempfile.TemporaryDirectory() as d:
        for name, blob in {**_RUNS["gmm"], "run.json": raw}.items():
            _write(d, name, blob)
        typed(load_run, d)


# ----------------------------------------------------------------------------- the child
@pytest.mark.skipif(IN_CHILD or sys.platform != "linux", reason="parent only; Linux ru_maxrss")
def test_fuzz_in_a_child_with_bounded_memory():
    env = {**os.environ, "PROBPATH_FUZZ_CHILD": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", __file__],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "9 passed" in out.stdout, out.stdout[-2000:]
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak_kib < 1.5 * 2**20, peak_kib
