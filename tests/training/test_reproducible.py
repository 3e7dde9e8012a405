"""Same seed -> same files: the Trainer seeds the initial weights, and ``probpath fit`` run
twice writes byte-identical weights and the same losses; the run records its environment.

Determinism on one machine is exact (the same float operations in the same order), so the
checks are byte equality, not tolerances."""

from __future__ import annotations

import json

import torch
from _trainer_models import NoisyDenoiser, toy_data
from typer.testing import CliRunner

import probpath
from probpath.cli.main import app
from probpath.core.serialization import read_json
from probpath.training import TrainConfig, Trainer
from probpath.training.seeding import is_pretrained, seeded_init


def _cfg(out, **kw):
    base = dict(steps=8, batch_size=16, lr=1e-2, warmup_steps=2, progress="off", log_every=2)
    base.update(kw)
    return TrainConfig(out_dir=str(out), **base)


def _losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]


def test_trainer_seed_fixes_the_initial_weights(tmp_path):
    # two models built under different global streams: the config's seed decides the weights
    torch.manual_seed(1)
    a = NoisyDenoiser()
    torch.manual_seed(2)
    b = NoisyDenoiser()
    assert not torch.equal(a.net[0].weight, b.net[0].weight)
    data = toy_data()
    Trainer(_cfg(tmp_path / "a")).fit(a, data)
    Trainer(_cfg(tmp_path / "b")).fit(b, data)
    wa = (tmp_path / "a" / "model.safetensors").read_bytes()
    wb = (tmp_path / "b" / "model.safetensors").read_bytes()
    assert wa == wb
    assert (tmp_path / "a" / "ema.safetensors").read_bytes() == (
        tmp_path / "b" / "ema.safetensors"
    ).read_bytes()
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert len(_losses(tmp_path / "a")) == 4  # 8 steps, a record every 2


def test_another_seed_gives_other_weights(tmp_path):
    data = toy_data()
    Trainer(_cfg(tmp_path / "a", seed=0)).fit(NoisyDenoiser(), data)
    Trainer(_cfg(tmp_path / "b", seed=1)).fit(NoisyDenoiser(), data)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() != (
        tmp_path / "b" / "model.safetensors"
    ).read_bytes()


def test_keep_and_pretrained_weights_are_not_reinitialised():
    model = NoisyDenoiser()
    with torch.no_grad():
        model.net[0].weight.fill_(0.25)  # a custom initialisation
    assert not seeded_init(model, 0, "keep")
    assert bool((model.net[0].weight == 0.25).all())
    config = TrainConfig(steps=2, batch_size=16, warmup_steps=0, progress="off", init="keep")
    result = Trainer(config).fit(model, toy_data())
    assert is_pretrained(result.model)
    before = {k: v.clone() for k, v in result.model.state_dict().items()}
    assert not seeded_init(result.model, 0, "auto")  # trained weights are kept
    assert all(torch.equal(before[k], v) for k, v in result.model.state_dict().items())


def test_loaded_models_keep_their_weights(tmp_path):
    # (the tiny test models are not in the catalog: a catalog model is saved and loaded)
    flow = probpath.build_model("realnvp", (2,), test=True)
    flow.save(tmp_path / "flow")
    loaded = probpath.load(tmp_path / "flow")
    assert is_pretrained(loaded)
    assert not seeded_init(loaded, 0)


def test_config_json_records_the_environment(tmp_path):
    Trainer(_cfg(tmp_path / "run", device="cpu")).fit(NoisyDenoiser(), toy_data())
    env = read_json(tmp_path / "run" / "config.json")["environment"]
    assert env["torch"] == torch.__version__
    assert env["device"] == "cpu"
    assert env["torch_threads"] == torch.get_num_threads()
    assert read_json(tmp_path / "run" / "config.json")["train"]["seed"] == 0


def test_cli_fit_twice_is_byte_identical(tmp_path):
    runner = CliRunner()
    outs = [tmp_path / "a", tmp_path / "b"]
    for i, out in enumerate(outs):
        torch.manual_seed(100 + i)  # whatever ran before in the process must not matter
        args = ["fit", "cfm", "--data", "moons", "--n", "400", "--steps", "30", "--quick"]
        res = runner.invoke(app, [*args, "--batch-size", "64", "--out", str(out)])
        assert res.exit_code == 0, res.output
    a, b = (o / "model.safetensors" for o in outs)
    assert a.read_bytes() == b.read_bytes()
    assert _losses(outs[0]) == _losses(outs[1])
    run = read_json(outs[0] / "run.json")
    assert run["seed"] == 0
    assert run["fit"]["environment"]["torch"] == torch.__version__
    assert run["fit"]["environment"]["torch_threads"] == torch.get_num_threads()
