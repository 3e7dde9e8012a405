"""Every few-step map resumes bit-exactly under the Trainer: a run interrupted two steps
after its checkpoint and resumed (fresh weights, another global seed) ends with the same
weights, target / EMA copies, step counters (curriculum, distillation rounds) and loss history
as the uninterrupted run, as the other models do (``tests/training/test_trainer_resume.py``).
Equality is exact: the same float operations on the same state give the same bits."""

from __future__ import annotations

import pytest
import torch

from probpath.catalog import CATALOG, build_model
from probpath.data import make_toy
from probpath.data.dataset import Dataset
from probpath.paths import AffinePath, GaussianMixtureOracle
from probpath.training import TrainConfig, Trainer

MAPS = [e.name for e in CATALOG if e.cls.__module__.startswith("probpath.maps")]
STEPS, CKPT = 8, 4


def _config(out):
    return TrainConfig(
        steps=STEPS, batch_size=16, lr=1e-2, warmup_steps=2, ema_decay=0.9, log_every=1,
        ckpt_every=CKPT, out_dir=str(out), progress="off",
    )  # fmt: skip


def _model(name, seed=0):
    torch.manual_seed(seed)
    kwargs = {"round_steps": 3} if name == "progressive-distillation" else {}
    return build_model(name, (2,), test=True, **kwargs).double()


def _fail_after(model, k):
    """Raise KeyboardInterrupt at the ``k + 1``-th training step (as a Ctrl-C would)."""
    real, calls = model.train_step, {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > k:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    model.train_step = step
    return model


def test_the_few_step_maps_are_all_covered():
    assert len(MAPS) == 7, MAPS


@pytest.mark.parametrize("name", MAPS)
def test_interrupted_and_resumed_map_training_is_bit_identical(tmp_path, name):
    data = Dataset(x=make_toy("moons", 64, seed=0, dtype=torch.float64))
    full = Trainer(_config(tmp_path / "full")).fit(_model(name), data)
    with pytest.raises(KeyboardInterrupt):
        Trainer(_config(tmp_path / "run")).fit(_fail_after(_model(name), CKPT + 2), data)
    torch.manual_seed(99)
    resumed = Trainer(_config(tmp_path / "run")).fit(
        _model(name, seed=5), data, resume=tmp_path / "run"
    )
    assert resumed.steps == full.steps == STEPS
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:  # online and target networks, internal teacher, train_steps, rounds
        assert torch.equal(a[k], b[k]), k
    for p, q in zip(full.ema_model.parameters(), resumed.ema_model.parameters()):
        assert torch.equal(p, q)
    losses = [[r["loss"] for r in res.history] for res in (full, resumed)]
    assert losses[0] == losses[1]


def test_rectified_distillation_from_a_frozen_teacher_resumes_bit_exactly(tmp_path):
    """With a frozen teacher the batches come from a pair set solved once; the pair set is not
    saved, and a resumed run solves the same set again (``pair_seed``, the same teacher), so
    the resumed weights and losses equal the uninterrupted run's."""
    oracle = GaussianMixtureOracle(
        [0.5, 0.5], [[-1.0, 0.0], [1.0, 0.5]], [[0.1, 0.1], [0.05, 0.2]], AffinePath("linear")
    )

    def model(seed):
        torch.manual_seed(seed)
        m = build_model("rectified-distillation", (2,), test=True, n_pairs=300).double()
        return m.set_teacher(oracle)

    data = Dataset(x=make_toy("moons", 64, seed=0, dtype=torch.float64))
    full = Trainer(_config(tmp_path / "full")).fit(model(0), data)
    with pytest.raises(KeyboardInterrupt):
        Trainer(_config(tmp_path / "run")).fit(_fail_after(model(0), CKPT + 2), data)
    torch.manual_seed(99)
    resumed = Trainer(_config(tmp_path / "run")).fit(model(5), data, resume=tmp_path / "run")
    assert full.model._pair_set is not None and resumed.model._pair_set is not None
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in full.history] == [r["loss"] for r in resumed.history]
