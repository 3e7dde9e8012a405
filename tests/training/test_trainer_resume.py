"""Exact resume and crash safety: a run killed at step k and resumed is bit-identical to an
uninterrupted run; an interrupted save leaves the previous checkpoint loadable."""

from __future__ import annotations

import os
import random
import shutil

import numpy as np
import pytest
import torch
from _trainer_models import NoisyDenoiser, Regressor, TwoGroups, toy_data

from probpath.core.serialization import CheckpointError
from probpath.data.dataset import Dataset
from probpath.training import TrainConfig, Trainer, load_checkpoint
from probpath.training import checkpoint as ckpt_mod
from probpath.training import trainer as trainer_mod

N_ROWS, BATCH = 64, 16  # 4 batches per epoch


def _data():
    # discrete values, so the dequantisation noise stream is part of what must resume
    x = (toy_data(n=N_ROWS) * 4).round().clamp(-16, 16) / 4
    return Dataset(x=x, discrete=True, n_levels=33, value_range=(-4.0, 4.0))


def _config(out, steps=12, ckpt_every=None):
    return TrainConfig(
        steps=steps, batch_size=BATCH, lr=3e-2, warmup_steps=3, grad_clip=0.5, ema_decay=0.9,
        log_every=1, ckpt_every=ckpt_every, out_dir=str(out), progress="off",
    )  # fmt: skip


def _model(kind, seed=0):
    torch.manual_seed(seed)
    return {"noisy": NoisyDenoiser, "two_groups": TwoGroups}[kind]().double()


def _strip(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def _assert_same_checkpoint(a, b):
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.meta["step"] == cb.meta["step"]
    for part in ("model", "ema", "state"):  # weights, EMA, optimizer moments, RNG streams
        ta, tb = getattr(ca, part), getattr(cb, part)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), f"{part}/{k} differs"
    for key in ("optimizers", "sampler", "scalers", "accumulator"):
        assert ca.meta[key] == cb.meta[key], key


@pytest.mark.parametrize(
    "kind, k",
    [("noisy", 6), ("noisy", 8), ("two_groups", 6)],
    ids=["mid-epoch", "epoch-end", "gan"],
)
def test_killed_and_resumed_run_is_bit_identical(tmp_path, kind, k):
    full = Trainer(_config(tmp_path / "full")).fit(_model(kind), _data())

    crashed = _model(kind)
    crashed.fail_at_call = k + 2  # killed two steps after the checkpoint at step k
    with pytest.raises(KeyboardInterrupt):
        Trainer(_config(tmp_path / "run", ckpt_every=k)).fit(crashed, _data())
    assert load_checkpoint(tmp_path / "run").meta["step"] == k

    # a different initialisation and global RNG state: everything must come from the checkpoint
    torch.manual_seed(99), np.random.seed(99), random.seed(99)  # noqa: NPY002
    fresh = _model(kind, seed=5)
    resumed = Trainer(_config(tmp_path / "run", ckpt_every=k)).fit(
        fresh, _data(), resume=tmp_path / "run"
    )
    assert resumed.steps == full.steps == 12
    for (n, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), n
    for p, q in zip(full.ema_model.parameters(), resumed.ema_model.parameters()):
        assert torch.equal(p, q)
    assert _strip(resumed.history) == _strip(full.history)
    assert [r["step"] for r in resumed.history] == list(range(1, 13))
    _assert_same_checkpoint(tmp_path / "full", tmp_path / "run")


def _run_to_step_2(out):
    model = _model("noisy")
    model.fail_at_call = 2
    with pytest.raises(KeyboardInterrupt):
        Trainer(_config(out, steps=4, ckpt_every=2)).fit(model, _data())


def _resume(run):
    return Trainer(_config(run, steps=4, ckpt_every=2)).fit(_model("noisy"), _data(), resume=run)


def _failing(monkeypatch, i, exc_type=OSError, target="replace"):
    """Make the ``i``-th os.replace (or any fsync) inside save_checkpoint raise."""
    real_save = ckpt_mod.save_checkpoint
    real = getattr(os, target)

    def save(*args, **kwargs):
        calls = {"n": 0}

        def broken(*a, **kw):
            if calls["n"] == i:
                raise exc_type("simulated crash while saving")
            calls["n"] += 1
            return real(*a, **kw)

        monkeypatch.setattr(os, target, broken)
        try:
            return real_save(*args, **kwargs)
        finally:
            monkeypatch.setattr(os, target, real)

    monkeypatch.setattr(trainer_mod.ckpt, "save_checkpoint", save)


def test_interrupted_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    full = Trainer(_config(tmp_path / "full", steps=4)).fit(_model("noisy"), _data())
    _run_to_step_2(tmp_path / "at2")
    before = load_checkpoint(tmp_path / "at2")
    # a save with a committed predecessor replaces 7 files: 3 x (keep .prev, write) + json
    for i in range(7):
        run = tmp_path / f"crash{i}"
        shutil.copytree(tmp_path / "at2", run)
        with monkeypatch.context() as m:
            _failing(m, i)
            with pytest.raises(OSError, match="simulated"):
                _resume(run)
        # crash again, at another point, in the next attempt (left-over files must not count)
        with monkeypatch.context() as m:
            _failing(m, 6 - i)
            with pytest.raises(OSError, match="simulated"):
                _resume(run)
        after = load_checkpoint(run)
        assert after.meta["step"] == 2
        for part in ("model", "ema", "state"):
            for key, value in getattr(before, part).items():
                assert torch.equal(getattr(after, part)[key], value), (i, part, key)
        done = _resume(run)
        for p, q in zip(full.model.parameters(), done.model.parameters()):
            assert torch.equal(p, q)
        assert load_checkpoint(run).meta["step"] == 4


def test_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    _run_to_step_2(tmp_path / "run")
    before = load_checkpoint(tmp_path / "run")
    with monkeypatch.context() as m:
        _failing(m, 1, target="fsync")
        with pytest.raises(OSError, match="simulated"):
            Trainer(_config(tmp_path / "run", steps=4, ckpt_every=2)).fit(
                _model("noisy"), _data(), resume=tmp_path / "run"
            )
    after = load_checkpoint(tmp_path / "run")
    assert after.meta["step"] == 2
    assert all(torch.equal(after.model[k], v) for k, v in before.model.items())
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_resume_refuses_another_model_or_a_plain_folder(tmp_path):
    _run_to_step_2(tmp_path / "run")
    other = NoisyDenoiser(hidden=8).double()
    with pytest.raises(CheckpointError, match="hidden"):
        Trainer(_config(tmp_path / "run", steps=4)).fit(other, _data(), resume=tmp_path / "run")
    (tmp_path / "e").mkdir()
    with pytest.raises(CheckpointError, match="not a resumable run"):
        Trainer(_config(tmp_path / "x")).fit(Regressor().double(), _data(), resume=tmp_path / "e")


def test_optimizer_state_flattens_to_tensors_and_json():
    model = Regressor().double()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    for _ in range(3):
        model.loss(toy_data()).mean().backward()
        opt.step()
        opt.zero_grad()
    tensors, meta = ckpt_mod.flatten_optimizer_state(opt.state_dict(), "optim.model")
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    import json

    meta = json.loads(json.dumps(meta))  # JSON round trip
    fresh = torch.optim.AdamW(Regressor().double().parameters(), lr=0.5)
    fresh.load_state_dict(ckpt_mod.unflatten_optimizer_state(tensors, meta, "optim.model"))
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for key, value in a["state"][i].items():
            assert torch.equal(value, b["state"][i][key])


def test_rng_states_round_trip():
    gen = torch.Generator().manual_seed(3)
    random.gauss(0, 1), np.random.normal()  # noqa: NPY002 (fill the cached Gaussians)
    saved = ckpt_mod.rng_state_tensors(gen, torch.device("cpu"))

    def draw():
        return (torch.rand(3).tolist(), torch.rand(3, generator=gen).tolist(),
                np.random.normal(size=3).tolist(), [random.gauss(0, 1) for _ in range(3)])  # noqa: NPY002  # fmt: skip

    first = draw()
    ckpt_mod.restore_rng_state(saved, gen, torch.device("cpu"))
    assert draw() == first


def test_changed_schedule_on_resume_is_reported(tmp_path):
    _run_to_step_2(tmp_path / "run")
    state = load_checkpoint(tmp_path / "run").meta["schedule"]
    assert state["kind"] == "cosine" and state["total_steps"] == 4 and state["warmup_steps"] == 3
    assert state["last_lr"]["model"] == pytest.approx(3e-2 * 2 / 3)  # warm-up step 2 of 3
    with pytest.warns(UserWarning, match="schedule differs"):
        Trainer(_config(tmp_path / "run", steps=8)).fit(
            _model("noisy"), _data(), resume=tmp_path / "run"
        )
