"""README.md is executable and true: its code fences close, its Python quickstart runs, and
its command-line examples run in order and give sane outputs.

The documented budgets stay as they are in the README; the test swaps them for small ones
(``OVERRIDES``: each must match exactly once, so an edited example cannot slip past the
test unnoticed)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

README = Path(__file__).resolve().parents[1] / "README.md"

#: README text -> the small budget the test runs instead (Python block).
PY_OVERRIDES = {
    'load_dataset("moons", n=5000)': 'load_dataset("moons", n=400)',
    "TrainConfig(steps=2000,": "TrainConfig(steps=40, progress='off',",
    "flow.sample(1000,": "flow.sample(200,",
}
#: README command -> the small budget the test runs instead (the "Command line" block).
CLI_OVERRIDES = {
    "fit ddpm --data digits --time 300": "fit ddpm --data digits --time 4 --n 400",
    "fit ddpm --data digits --steps 50000": "fit ddpm --data digits --steps 60 --n 400",
    "fit cfm --data moons --time 60": "fit cfm --data moons --time 3 --n 400",
    "evaluate runs/ddpm --metrics": "evaluate runs/ddpm --n 40 --metrics",
    "--data 8gaussians --time 60": "--data 8gaussians --time 2 --n 600 --n-eval 100 --n-nll 16",
}


def _blocks(text: str) -> list[tuple[str, str, int]]:
    """``(language, body, line)`` of every fenced block; raises on an unclosed fence."""
    blocks, lang, body, start = [], None, [], 0
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if lang is None:
                lang, body, start = line[3:].strip() or "text", [], i
            else:
                assert line.strip() == "```", f"line {i}: a closing fence takes no language"
                blocks.append((lang, "\n".join(body), start))
                lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"the fence opened on line {start} never closes"
    return blocks


def _override(text: str, overrides: dict[str, str]) -> str:
    for old, new in overrides.items():
        assert text.count(old) == 1, f"README example changed: {old!r} not found exactly once"
        text = text.replace(old, new)
    return text


def test_every_fence_closes_and_no_prose_is_swallowed():
    blocks = _blocks(README.read_text())
    assert blocks, "README has no code block"
    for _, body, line in blocks:
        # a stray fence turns the following prose into code: a Markdown heading in a block
        assert not re.search(r"^#{2,3} [A-Z]", body, re.M), f"block at line {line} has a heading"
        assert not body.startswith("```"), f"block at line {line}: two fences in a row"
    langs = [lang for lang, _, _ in blocks]
    assert "python" in langs and langs.count("bash") >= 2


def test_python_quickstart_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = "\n".join(body for lang, body, _ in _blocks(README.read_text()) if lang == "python")
    scope: dict = {}
    exec(compile(_override(code, PY_OVERRIDES), "README.md", "exec"), scope)  # noqa: S102
    data, x, again, flow = scope["data"], scope["x"], scope["again"], scope["flow"]
    assert x.shape == (200, 2) and torch.isfinite(x).all()
    # Sanity, not quality (40 steps): the ODE carries N(0, I) prior draws towards the data, so
    # every sample lies within the data's bounding box widened by 4 prior standard deviations.
    low, high = data.x.min(0).values - 4, data.x.max(0).values + 4
    assert ((x >= low) & (x <= high)).all()
    # the saved run reloads to the same model: the same seeded draw, bit for bit
    g1, g2 = (torch.Generator().manual_seed(5) for _ in range(2))
    assert torch.equal(again.sample(7, generator=g1), flow.sample(7, generator=g2))
    assert (tmp_path / "runs" / "otcfm" / "model.safetensors").is_file()


def _cli_lines() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Command line") :]
    body = next(b for lang, b, _ in _blocks(section) if lang == "bash")
    lines = [line.split("  #")[0].strip() for line in body.splitlines()]
    return [line for line in lines if line.startswith("probpath ")]


@pytest.mark.slow
def test_command_line_examples_run_in_order(tmp_path, monkeypatch):
    from probpath.cli.main import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    lines = _cli_lines()
    assert len(lines) >= 9 and lines[0] == "probpath info"
    joined = _override("\n".join(lines), CLI_OVERRIDES)
    outputs = {}
    for line in joined.splitlines():
        res = runner.invoke(app, shlex.split(line)[1:])
        assert res.exit_code == 0, (line, res.output)
        outputs[line] = res.output
    for png in ("ddpm.png", "paths.png", "gmm.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # the dpmpp_2m example as written, saved as an array: inside digits' range [0, 16]
    # (x0_hat is clamped to the data range on bounded data: the last step lands on it)
    sample_line = next(x for x in lines if "--sampler dpmpp_2m" in x)
    npy = sample_line.replace("--out ddpm.png", "--out ddpm.npy")
    assert runner.invoke(app, shlex.split(npy)[1:]).exit_code == 0
    s = np.load(tmp_path / "ddpm.npy")
    assert s.shape == (64, 1, 8, 8) and s.min() >= -1e-4 and s.max() <= 16 + 1e-4
    evaluate = next(out for line, out in outputs.items() if line.startswith("probpath evaluate"))
    assert "held-out 10% of digits" in evaluate
    table = (tmp_path / "runs" / "cmp" / "table.md").read_text()
    assert "failed" not in table and all(m in table for m in ("gaussian", "ddpm", "ot-cfm"))
