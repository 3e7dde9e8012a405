"""probpath never unpickles, and malformed weight files raise ``CheckpointError``.

A pickle whose payload would create a marker file is written by the test (probpath never
writes one) in place of weights, checkpoints and trainer state; every loader refuses it and
the marker never appears. Truncated, garbled, mis-shaped, incomplete, over-complete and
non-finite safetensors files are refused with ``CheckpointError``.
"""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
import torch
from safetensors.torch import save as st_save

import probpath
from probpath.catalog import CATALOG, build_model
from probpath.core import Capabilities, CheckpointError, Model
from probpath.core.serialization import load_tensors, read_json
from probpath.core.validation import check_tensor
from probpath.training import TrainConfig, Trainer, load_checkpoint


class TinyNet(Model):
    """A two-parameter-tensor model used only here (not in the catalog)."""

    capabilities = Capabilities(route="likelihood", section="§1.2")

    def __init__(self, event_shape=(2,), width=3):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.lin = torch.nn.Linear(event_shape[0], width)

    def loss(self, x, cond=None):
        x = check_tensor(x, "x", event_shape=self.event_shape)
        return (self.lin(x) ** 2).sum(1)

    def sample(self, n, cond=None, generator=None, **options):
        if n < 1:
            raise ValueError("n must be >= 1")
        return torch.randn(n, *self.event_shape, generator=generator)


class _Payload:
    """Unpickling this object creates ``path`` — the proof that a loader ran a pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_bytes(marker):
    return pickle.dumps(_Payload(marker))


def _train_run(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(32, 2)
    cfg = TrainConfig(steps=2, batch_size=8, out_dir=str(tmp_path / "run"), progress="off",
                      device="cpu")  # fmt: skip
    Trainer(cfg).fit(TinyNet(), x)
    return tmp_path / "run", x


def _rewrite_digest(run, name):
    """Record the (tampered) file's digest so that loading reaches the parser / the checks."""
    meta = json.loads((run / "trainer_state.json").read_text())
    meta["files"][name] = hashlib.sha256((run / name).read_bytes()).hexdigest()
    (run / "trainer_state.json").write_text(json.dumps(meta))


def _neural_entry():
    return next((e for e in CATALOG if not e.cls.capabilities.estimator and e.data != "image"),
                None)  # fmt: skip


def test_pickle_payload_is_never_executed(tmp_path):
    marker = tmp_path / "PWNED"
    evil = _evil_bytes(marker)
    run, x = _train_run(tmp_path)

    # weights: load_tensors (used by Model.load_weights callers and probpath.load)
    for name in ("model.safetensors", "weights.pt", "weights.bin"):
        (tmp_path / name).write_bytes(evil)
        with pytest.raises(CheckpointError, match="pickle"):
            load_tensors(tmp_path / name)
    # a trainer checkpoint whose files were swapped for the pickle (digests updated to match)
    for name in ("model.safetensors", "trainer_state.safetensors", "ema.safetensors"):
        original = (run / name).read_bytes()
        (run / name).write_bytes(evil)
        _rewrite_digest(run, name)
        with pytest.raises(CheckpointError, match="pickle"):
            load_checkpoint(run)
        with pytest.raises(CheckpointError, match="pickle"):
            Trainer(TrainConfig(steps=3, batch_size=8, progress="off")).fit(
                TinyNet(), x, resume=run
            )
        (run / name).write_bytes(original)
        _rewrite_digest(run, name)
    (run / "trainer_state.json").write_bytes(evil)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(run)

    # probpath.load on a real catalog model's directory
    entry = _neural_entry()
    if entry is not None:
        model = build_model(entry, (2,), 3 if entry.cls.capabilities.conditional else None,
                            test=True)  # fmt: skip
        model.save(tmp_path / "saved")
        (tmp_path / "saved" / "model.safetensors").write_bytes(evil)
        with pytest.raises(CheckpointError, match="pickle"):
            probpath.load(tmp_path / "saved")
        (tmp_path / "saved" / "config.json").write_bytes(evil)
        with pytest.raises(CheckpointError, match="pickle"):
            probpath.load(tmp_path / "saved")
    assert not marker.exists(), "a pickle was executed"


def _corruptions():
    good = {"lin.weight": torch.ones(3, 2), "lin.bias": torch.zeros(3)}
    data = st_save(good)
    garbage = data[:8] + b"\xff\xfe{not json" + data[18:]
    huge = (2**62).to_bytes(8, "little") + data[8:]
    nan = dict(good, **{"lin.bias": torch.tensor([0.0, float("nan"), 0.0])})
    return {
        "truncated": data[: len(data) // 2],
        "header-garbage": garbage,
        "header-length-too-large": huge,
        "wrong-shape": st_save({"lin.weight": torch.ones(4, 2), "lin.bias": torch.zeros(4)}),
        "missing-key": st_save({"lin.weight": torch.ones(3, 2)}),
        "extra-key": st_save(dict(good, extra=torch.zeros(1))),
        "nan-tensor": st_save(nan),
        "empty-file": b"",
    }


CORRUPTIONS = _corruptions()


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_malformed_weights_raise_checkpoint_error(tmp_path, kind):
    path = tmp_path / "model.safetensors"
    path.write_bytes(CORRUPTIONS[kind])
    model = TinyNet()
    with pytest.raises(CheckpointError):
        model.load_weights(load_tensors(path), str(path))
    # the same file inside a trainer checkpoint: resuming refuses it
    run, x = _train_run(tmp_path)
    (run / "model.safetensors").write_bytes(CORRUPTIONS[kind])
    _rewrite_digest(run, "model.safetensors")
    with pytest.raises(CheckpointError):
        Trainer(TrainConfig(steps=3, batch_size=8, progress="off")).fit(TinyNet(), x, resume=run)


def test_tampered_checkpoint_without_digest_update_is_refused(tmp_path):
    run, x = _train_run(tmp_path)
    tensors = load_tensors(run / "model.safetensors")
    tensors["lin.bias"] = tensors["lin.bias"] + 1.0
    (run / "model.safetensors").write_bytes(st_save(tensors))
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(run)


@pytest.mark.parametrize("kind", ["truncated", "wrong-shape", "missing-key", "nan-tensor"])
def test_probpath_load_refuses_malformed_weights(tmp_path, kind):
    entry = _neural_entry()
    if entry is None:
        pytest.skip("no neural catalog model yet")
    model = build_model(entry, (2,), 3 if entry.cls.capabilities.conditional else None, test=True)
    model.save(tmp_path / "m")
    good = load_tensors(tmp_path / "m" / "model.safetensors")
    first = next(iter(good))
    bad = dict(good)
    if kind == "truncated":
        data = (tmp_path / "m" / "model.safetensors").read_bytes()
        (tmp_path / "m" / "model.safetensors").write_bytes(data[: len(data) - 7])
    else:
        if kind == "wrong-shape":
            shape = good[first].shape
            bad[first] = torch.zeros(tuple(s + 1 for s in shape) if len(shape) else (2,))
        elif kind == "missing-key":
            del bad[first]
        else:
            bad[first] = torch.full_like(good[first], float("nan"))
        (tmp_path / "m" / "model.safetensors").write_bytes(st_save(bad))
    with pytest.raises(CheckpointError):
        probpath.load(tmp_path / "m")
    assert read_json(tmp_path / "m" / "config.json")["class"] == entry.cls.__name__


def test_valid_safetensors_starting_with_pickle_magic_byte_loads(tmp_path):
    """A safetensors file starts with its header length; when its low byte is 0x80 (a
    pickle's protocol marker) the file is still recognised as safetensors and loads."""
    from safetensors.torch import save as st_save

    from probpath.core.serialization import load_tensors

    name = next("w" * k for k in range(1, 300) if st_save({"w" * k: torch.zeros(2)})[:1] == b"\x80")
    (tmp_path / "t.safetensors").write_bytes(st_save({name: torch.arange(2.0)}))
    assert torch.equal(load_tensors(tmp_path / "t.safetensors")[name], torch.arange(2.0))
