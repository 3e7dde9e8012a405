"""``probpath fit ldm`` / ``latent-cfm`` from the command line: ``--set`` options for the latent
size and the autoencoder's budget share, ``--conditional``, sampling and the bound."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

import probpath
from probpath.cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_fit_sample_evaluate_with_set_options(tmp_path):
    """6 steps with ``autoencoder_share=0.5``: steps 0-2 train the autoencoder, 3-5 the latent
    model (budget used 3/6 = 0.5 at step 3), so the saved run is in stage 1 with a scale
    estimated on 3-dimensional latents; labels reach the latent path model."""
    out = tmp_path / "ldm"
    res = invoke(
        "fit", "latent-cfm", "--data", "digits", "--n", "120", "--steps", "6", "--out", out,
        "--conditional", "--quiet",
        "--set", "latent_dim=3", "--set", "autoencoder_share=0.5",
        "--set", 'autoencoder={"channels": [4, 8]}',
        "--set", 'prior_options={"network": {"hidden": [8]}, "steps": 2, "likelihood_steps": 2}',
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["latent_dim"] == 3 and config["autoencoder_share"] == 0.5
    run = probpath.load(out)
    assert run.model.latent_dim == 3 and run.model.num_classes == 10
    assert int(run.model.stage) == 1 and float(run.model.scale) > 0
    png, npy = tmp_path / "s.png", tmp_path / "s.npy"
    assert invoke("sample", out, "--n", "4", "--class", "3", "--out", npy).exit_code == 0
    assert np.load(npy).shape == (4, 1, 8, 8)
    assert invoke("sample", out, "--n", "4", "--out", png).exit_code == 0
    res = invoke("evaluate", out, "--metrics", "nll")
    assert res.exit_code == 0, res.output
    assert "bound" in res.output
