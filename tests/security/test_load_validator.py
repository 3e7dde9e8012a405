"""Issue #13, causes 2 and 3 (runs): one load-time validator, sizes bounded before allocation.

Each test writes a run the way ``model.save`` does, then alters exactly what the issue's case
alters, and checks ``probpath.load`` refuses it with a typed error naming the file and the
key — before the weights are read (header checks) or before the model is allocated (size
checks).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import probpath
from probpath.catalog import build_model, get_entry
from probpath.core.limits import ResourceLimitError
from probpath.core.serialization import CheckpointError, read_safetensors_header
from probpath.training import checkpoint as ckpt


@pytest.fixture(scope="module")
def cfm_run(tmp_path_factory):
    """A tiny saved neural model (cfm, quick configuration, 2-D data)."""
    out = tmp_path_factory.mktemp("cfm") / "run"
    torch.manual_seed(0)
    build_model(get_entry("cfm"), (2,), None, quick=True).save(out)
    return out


def _gmm_run(tmp_path, **options):
    x = torch.randn(60, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = build_model(get_entry("gmm"), (3,), None, n_components=2, **options).fit(x)
    return model.save(tmp_path / "gmm"), x


def _copy(run, tmp_path, name="copy"):
    dst = tmp_path / name
    dst.mkdir()
    for f in run.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _retype(run, key, dtype):
    """Rewrite ``model.safetensors`` with tensor ``key`` cast to ``dtype``."""
    tensors = load_file(run / "model.safetensors")
    tensors[key] = tensors[key].to(dtype)
    save_file(tensors, run / "model.safetensors")


# ----------------------------------------------------------------------------- cause 2
@pytest.mark.parametrize(
    "dtype, words",
    [
        (torch.complex64, "'C64'"),  # skipped the finiteness check and sampled NaNs
        (torch.float8_e4m3fn, "'F8_E4M3'"),  # crashed the check with a traceback
        (torch.int64, "does not cast"),  # was cast silently
    ],
)
def test_non_real_float_weights_are_refused_naming_file_and_key(cfm_run, tmp_path, dtype, words):
    run = _copy(cfm_run, tmp_path)
    key = next(iter(load_file(run / "model.safetensors")))
    _retype(run, key, dtype)
    with pytest.raises(CheckpointError) as info:
        probpath.load(run)
    message = str(info.value)
    assert "model.safetensors" in message and repr(key) in message and words in message


def test_header_is_checked_before_any_weight_is_read(cfm_run, tmp_path, monkeypatch):
    """A mis-shaped tensor is refused from the header: the weight bytes are never read."""
    run = _copy(cfm_run, tmp_path)
    tensors = load_file(run / "model.safetensors")
    key = next(iter(tensors))
    tensors[key] = torch.zeros(3, 3)
    save_file(tensors, run / "model.safetensors")
    import probpath.core.serialization as ser

    monkeypatch.setattr(ser, "st_load_bytes", lambda data: pytest.fail("weights were read"))
    with pytest.raises(CheckpointError, match=rf"{key}.*shape \(3, 3\)"):
        probpath.load(run)


@pytest.mark.parametrize("change", ["missing", "extra", "misshaped", "int"])
def test_estimator_tensors_must_match_the_configuration(tmp_path, change):
    """gmm with n_components=2 on d=3 saves means_ (2, 3), weights_ (2,), ...; any other
    set of tensors is refused (they used to be setattr-ed as found)."""
    run, _ = _gmm_run(tmp_path)
    tensors = load_file(run / "model.safetensors")
    if change == "missing":
        del tensors["weights_"]
    elif change == "extra":
        tensors["sample_bias_"] = torch.zeros(3, dtype=torch.float64)
    elif change == "misshaped":
        tensors["means_"] = torch.zeros(5, 3, dtype=torch.float64)
    else:
        tensors["weights_"] = tensors["weights_"].to(torch.int64)
    save_file(tensors, run / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        probpath.load(run)


@pytest.mark.parametrize("key", ["__dict__", "__class__", "fit", "sample_", "_private_"])
def test_config_state_keys_come_from_an_allow_list(tmp_path, key):
    """config.json's "state" reached setattr: ``__dict__`` would replace the object's dict."""
    run, _ = _gmm_run(tmp_path)
    meta = json.loads((run / "config.json").read_text())
    meta["state"][key] = 1
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"config\.json.*'state'"):
        probpath.load(run)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_every_covariance_type_still_round_trips(tmp_path, covariance_type):
    """The registry's shapes are the ones the estimator saves: log p is unchanged (exactly:
    the same float64 tensors are loaded)."""
    run, x = _gmm_run(tmp_path, covariance_type=covariance_type)
    original = probpath.load(run)
    assert set(read_safetensors_header(run / "model.safetensors")) == {
        "center_", "means_", "weights_", "covariances_", "precisions_cholesky_", "precisions_",
    }  # fmt: skip
    torch.testing.assert_close(original.log_prob(x), probpath.load(run).log_prob(x))


def test_deep_json_in_config_is_a_checkpoint_error(cfm_run, tmp_path):
    run = _copy(cfm_run, tmp_path)
    (run / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        probpath.load(run)


# ----------------------------------------------------------------------------- cause 3 (runs)
def test_huge_width_in_config_is_refused_before_allocation(cfm_run, tmp_path):
    """hidden = [10**9] on 2-D data asks for a 10**9 x 2 first layer (2e9 elements, 8 GB)."""
    run = _copy(cfm_run, tmp_path)
    meta = json.loads((run / "config.json").read_text())
    meta["config"]["network"] = {"hidden": [10**9]}
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ResourceLimitError, match="--max-params"):
        probpath.load(run)


def test_huge_num_steps_buffer_is_refused_before_allocation(tmp_path):
    """ddpm's num_steps sets buffers of num_steps entries: 1e11 would be 800 GB."""
    run = build_model(get_entry("ddpm"), (2,), None, quick=True).save(tmp_path / "ddpm")
    meta = json.loads((run / "config.json").read_text())
    meta["config"]["num_steps"] = 10**11
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ResourceLimitError):
        probpath.load(run)


# ----------------------------------------------------------------------------- cause 4 (load)
def test_load_after_a_failed_save_reads_the_committed_weights(cfm_run, tmp_path, monkeypatch):
    """A save that dies after replacing model.safetensors but before its commit record:
    ``probpath.load`` must return the committed weights (kept as model.safetensors.prev)."""
    run = _copy(cfm_run, tmp_path)
    model = probpath.load(run)
    committed = {k: v.clone() for k, v in model.state_dict().items()}
    state = {"step": torch.zeros(1)}
    ckpt.save_checkpoint(run, model=committed, ema=None, state=state, meta={"step": 1})
    newer = {k: v + 1 for k, v in committed.items()}

    def die(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "atomic_write_json", die)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(run, model=newer, ema=None, state=state, meta={"step": 2})
    monkeypatch.undo()
    loaded = probpath.load(run).state_dict()
    for k, v in committed.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)


def test_stale_temp_files_are_removed_by_the_next_save(cfm_run, tmp_path):
    """Only our temp names (.NAME.XXXXXXXX.tmp, .NAME.prev.tmp) go; other files stay."""
    run = _copy(cfm_run, tmp_path)
    ours = [run / ".model.safetensors.ab12cd_9.tmp", run / ".model.safetensors.prev.tmp"]
    theirs = [run / "notes.tmp", run / ".model.safetensors.tmp", run / "keep.txt"]
    for p in ours + theirs:
        p.write_bytes(b"x")
    sd = probpath.load(run).state_dict()
    ckpt.save_checkpoint(run, model=sd, ema=None, state={"s": torch.zeros(1)}, meta={})
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)


@pytest.mark.parametrize("value", [[], {"a": 1}, 3])
def test_config_value_of_the_wrong_type_is_a_checkpoint_error(tmp_path, value):
    """Found by the fuzz test: covariance_type = [] crashed the spec lookup (unhashable)."""
    run, _ = _gmm_run(tmp_path)
    meta = json.loads((run / "config.json").read_text())
    meta["config"]["covariance_type"] = value
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="covariance_type"):
        probpath.load(run)
