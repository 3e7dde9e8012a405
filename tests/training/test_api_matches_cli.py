"""One behaviour for the API and the CLI: ``probpath.load(run)`` samples and scores in the
data's space with the weights the CLI uses; ``Trainer.fit`` refuses to overwrite a run;
``fit`` takes a Dataset, a tensor, an array or a DataLoader.

Equalities are exact where both sides run the same float operations (same weights, same
seeded generator, same maps); the CLI stores ``.npy`` samples as float32, so the API's
float64 samples are cast before comparing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _trainer_models import NoisyDenoiser, toy_data
from typer.testing import CliRunner

import probpath
from probpath.cli.main import app
from probpath.compare import evaluation_data
from probpath.compare.runmodel import RunModel
from probpath.compare.space import dequantize_held_out
from probpath.core.serialization import load_tensors
from probpath.metrics import bits_per_dim
from probpath.training import TrainConfig, Trainer
from probpath.training.data import as_training_data

runner = CliRunner()


def _cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def test_load_samples_like_the_cli_with_ema_weights(tmp_path):
    run = tmp_path / "cfm"
    _cli("fit", "cfm", "--data", "moons", "--n", "300", "--steps", "30", "--quick", "--quiet",
         "--out", run)  # fmt: skip
    model = probpath.load(run)
    assert isinstance(model, RunModel) and model.record.fit["used_ema"]
    ema = load_tensors(run / "ema.safetensors")
    assert all(torch.equal(v, ema[k]) for k, v in model.model.state_dict().items())
    _cli("sample", run, "--n", "6", "--seed", "3", "--out", tmp_path / "s.npy", "--quiet")
    api = model.sample(6, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(np.load(tmp_path / "s.npy"), api.numpy().astype(np.float32))
    bare = probpath.load(run, space="model")
    assert not isinstance(bare, RunModel)


def test_load_speaks_data_space_on_scaled_images(tmp_path):
    # digits: 8x8 images in 0..16, fitted by a vector model on [-1, 1]-scaled flattened data
    run = tmp_path / "g"
    _cli("fit", "gaussian", "--data", "digits", "--out", run)
    model = probpath.load(run)
    _cli("sample", run, "--n", "5", "--seed", "1", "--out", tmp_path / "s.npy")
    api = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert api.shape == (5, 1, 8, 8) and model.event_shape == (1, 8, 8)
    assert np.array_equal(np.load(tmp_path / "s.npy"), api.numpy().astype(np.float32))
    # log_prob in data units: evaluate's bits/dim from the API's density (same dequantised
    # draw, same bin width); equal up to float64 summation order (~1e-12 relative)
    out = _cli("evaluate", run, "--metrics", "nll", "--json", "--quiet")
    cli_nll = json.loads(out[out.index("{") :])["nll"]["value"]
    r = model.record
    test, _ = evaluation_data(r.data, run_n=r.n, run_seed=r.seed, holdout=r.holdout)
    x = dequantize_held_out(test.x[:1000].double(), model.space, 0)
    api_nll = float(bits_per_dim(model.log_prob(x), 64, bin_width=1.0))  # the mean
    assert api_nll == pytest.approx(cli_nll, rel=1e-10)


def test_fit_refuses_to_overwrite_a_run(tmp_path):
    cfg = dict(steps=2, batch_size=16, warmup_steps=0, progress="off", out_dir=str(tmp_path))
    Trainer(TrainConfig(**cfg)).fit(NoisyDenoiser(), toy_data())
    with pytest.raises(FileExistsError, match="resume=.*overwrite=True"):
        Trainer(TrainConfig(**cfg)).fit(NoisyDenoiser(), toy_data())
    Trainer(TrainConfig(**cfg, overwrite=True)).fit(NoisyDenoiser(), toy_data())


def test_fit_accepts_arrays_datasets_and_loaders(tmp_path):
    x = toy_data(n=40, dtype=torch.float32)
    y = torch.arange(40) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    for data in (x, x.numpy(), loader, torch.utils.data.TensorDataset(x, y)):
        got = as_training_data(data)
        assert torch.equal(got.x, x)
    assert torch.equal(as_training_data(loader).y, y) and as_training_data(loader).num_classes == 3
    assert as_training_data(np.arange(6).reshape(3, 2)).x.dtype == torch.float32
    with pytest.raises(TypeError, match="DataLoader"):
        as_training_data("moons")
    with pytest.raises(ValueError, match="empty"):
        as_training_data(torch.utils.data.TensorDataset(x[:0]))
    # the loader's batching is not used: the same seeded batches, byte-identical weights
    cfg = dict(steps=4, batch_size=8, warmup_steps=0, progress="off")
    for name, data in (("t", x), ("l", loader)):
        Trainer(TrainConfig(**cfg, out_dir=str(tmp_path / name))).fit(NoisyDenoiser(), data)
    a, b = (tmp_path / n / "model.safetensors" for n in "tl")
    assert a.read_bytes() == b.read_bytes()


def test_config_json_names_the_catalog_entry(tmp_path):
    # ddpm and ddpm-unet are both DiffusionModel: the class alone cannot tell the image entry
    model = probpath.build_model("ddpm-unet", (1, 8, 8), test=True)
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["catalog"] == "ddpm-unet"
    loaded = probpath.load(tmp_path / "m")
    assert loaded.catalog_name == "ddpm-unet"
    # without run.json, evaluate finds the image entry and scores image data
    res = runner.invoke(app, ["evaluate", str(tmp_path / "m"), "--data", "digits", "--n", "20",
                              "--metrics", "swd", "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "20 points of digits" in res.output
