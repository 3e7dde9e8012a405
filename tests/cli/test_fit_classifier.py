"""CLI: ``probpath fit classifier --run RUN`` and ``sample --classifier --class``.

The exact behaviour of classifier guidance (with the mixture's exact class posterior it
equals the exact conditional score) is tested in ``tests/sampling/test_guidance*``; here: the
command trains on RUN's path and data, the saved classifier reloads bit-identically
(safetensors round trip: exact equality), sampling through the CLI uses it, and bad input is a
one-line error (exit code 2).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from probpath.cli.main import app
from probpath.sampling.guidance import load_classifier

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("clf")
    r = invoke(
        "fit", "ddpm", "--data", "gmm", "--steps", "200", "--out", root / "m",
        "--set", 'network={"hidden":[32,32]}', "--set", "steps=20", "--device", "cpu", "-q",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = invoke(
        "fit", "classifier", "--run", root / "m", "--steps", "300", "--hidden", "[32,32]",
        "--out", root / "c", "--device", "cpu",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    return root


def test_classifier_run_round_trips_exactly(runs):
    from probpath.cli.classifier import load_classifier_run
    from probpath.cli.options import load_run

    net = load_classifier(runs / "c")
    model, _ = load_run(runs / "m", "cpu", "auto")
    again = load_classifier_run(runs / "c", model, "cpu")
    x, t = torch.randn(16, 2), torch.rand(16)
    assert torch.equal(net(x, t), again(x, t))  # same weights: bit-identical logits


def test_classifier_guidance_moves_samples_to_the_class(runs):
    # share of samples the classifier (at t_min) puts in class 0: unguided ~ the class's
    # prior share; guided with scale 4 it must be higher (guidance ascends log p(0 | x_t))
    from probpath.cli.options import load_run

    net = load_classifier(runs / "c")
    _, record = load_run(runs / "m", "cpu", "auto")
    shares = []
    for extra in ([], ["--class", "0", "--classifier", runs / "c", "--classifier-scale", "4"]):
        out = runs / f"s{len(extra)}.npy"
        r = invoke("sample", runs / "m", "--n", "400", "--out", out, *extra)
        assert r.exit_code == 0, r.output
        z = record.space.to_model(torch.as_tensor(np.load(out)).double()).float()
        with torch.no_grad():
            pred = net(z, torch.full((len(z),), 1e-3)).argmax(1)
        shares.append(float((pred == 0).float().mean()))
    assert shares[1] > shares[0] + 0.2, shares


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "1"], "--run"),
        (["--run", "nowhere", "--steps", "1"], "nowhere"),
        (["--run", "{m}", "--wide", "3"], "--run"),
        (["--run", "{m}", "--hidden", "[0]"], "--hidden"),
    ],
)
def test_fit_classifier_bad_input(runs, args, message):
    args = [a.format(m=runs / "m") for a in args]
    r = invoke("fit", "classifier", *args, "--out", runs / "bad")
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_sample_classifier_bad_input(runs):
    out = runs / "x.npy"
    r = invoke("sample", runs / "m", "--classifier", runs / "m", "--n", "2", "--out", out)
    assert r.exit_code == 2 and "not a classifier run" in r.output
    r = invoke(
        "sample", runs / "m", "--classifier", runs / "c", "--class", "99", "--n", "2", "--out", out
    )
    assert r.exit_code == 2 and "--class" in r.output
