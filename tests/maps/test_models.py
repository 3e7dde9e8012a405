"""Mechanics of the few-step models: NFE, rounds, teachers, errors (tiny, no training)."""

from __future__ import annotations

import pytest
import torch

import probpath
from probpath.catalog import build_model
from probpath.maps import (
    ConsistencyFlowMatching,
    ConsistencyModel,
    MeanFlow,
    ProgressiveDistillation,
    RectifiedDistillation,
    ShortcutModel,
    load_teacher,
)
from probpath.paths import AffinePath, GaussianMixtureOracle
from probpath.sampling import sample_path

TINY = {"hidden": [8]}


@pytest.mark.parametrize(
    ("model", "steps", "nfe"),
    [
        (ConsistencyModel((2,), "training", network=TINY), 1, 1),
        (ConsistencyModel((2,), "training", network=TINY), 4, 4),
        (MeanFlow((2,), network=TINY), 2, 2),
        (ShortcutModel((2,), network=TINY), 4, 4),
        (RectifiedDistillation((2,), network=TINY, teacher_network=TINY), None, 1),
        (ConsistencyFlowMatching((2,), network=TINY), None, 2),
    ],
)
def test_nfe_is_the_number_of_map_calls(model, steps, nfe):
    """One network call per step; ``sampling_nfe`` reports it (read by ``compare``)."""
    calls = []
    model.network.register_forward_hook(lambda *a: calls.append(1))
    opts = {} if steps is None else {"steps": steps}
    x = model.sample(5, generator=torch.Generator().manual_seed(0), **opts)
    assert x.shape == (5, 2) and model.sampling_nfe == nfe == len(calls)


def test_consistency_fm_maps_each_segment_to_its_lower_end():
    """``f(x, t) = x - (t - b_k) v``: at a segment's lower end ``b_k`` (not 0) ``f(x, b_k)``
    belongs to the segment below, and ``f(x, 0^+) -> x``; the segment starts of 2 segments are
    0 for ``t in (0, 0.5]`` and 0.5 for ``t in (0.5, 1]``."""
    m = ConsistencyFlowMatching((2,), network=TINY)
    t = torch.tensor([1e-6, 0.25, 0.5, 0.5001, 1.0])
    assert m.segment_start(t).tolist() == [0.0, 0.0, 0.0, 0.5, 0.5]
    x = torch.randn(5, 2)
    f, v = m.segment_map(x, t)
    torch.testing.assert_close(f, x - (t - m.segment_start(t))[:, None] * v)


def test_rectified_distillation_pairs_are_the_teachers_ode_map():
    """The pair targets are ``sample_path(teacher, rk4, pair_steps)`` of the same noise."""
    o = GaussianMixtureOracle([1.0], [[1.0, -1.0]], [[0.2, 0.3]], path=AffinePath("linear"))
    m = RectifiedDistillation((2,), network=TINY, teacher_network=TINY, pair_steps=4).double()
    m.set_teacher(o)
    eps, target = m.pairs(8, generator=torch.Generator().manual_seed(0))
    grid = torch.linspace(1.0, 0.0, 5, dtype=torch.float64)
    ref = sample_path(o, eps.shape, sampler="rk4", grid=grid, x_init=eps).x
    torch.testing.assert_close(target, ref)


def test_progressive_rounds_halve_the_steps_and_survive_save_load(tmp_path):
    """Without a teacher: round 0 pretrains (16 DDIM steps), then each round halves N down to
    ``final_steps``; the round and N are saved with the weights."""
    m = ProgressiveDistillation((2,), network=TINY, teacher_steps=16, final_steps=4, round_steps=2)
    assert m.pretraining and int(m.student_steps) == 16
    opt = torch.optim.Adam(m.optimizer_groups()["model"].params)

    def update(loss, group):
        opt.zero_grad()
        loss.backward()
        opt.step()

    seen = []
    for k in range(8):
        m.train_step(torch.randn(16, 2), None, k, update)
        seen.append(int(m.student_steps))
    assert seen == [16, 8, 8, 4, 4, 4, 4, 4]
    m.save(tmp_path / "pd")
    loaded = probpath.load(tmp_path / "pd")
    assert int(loaded.student_steps) == 4 and int(loaded.round) == 2
    loaded.sample(3)
    assert loaded.sampling_nfe == 4


def test_teacher_errors_name_the_fix(tmp_path):
    """A teacher on another path, a run without a field, and a missing teacher are refused
    with a message that says what to do."""
    o = GaussianMixtureOracle([1.0], [[0.0, 0.0]], [[1.0, 1.0]], path=AffinePath("vp"))
    with pytest.raises(ValueError, match="schedule"):
        ConsistencyModel((2,), network=TINY, teacher_network=TINY).set_teacher(o)
    gmm = build_model("gaussian", (2,)).fit(torch.randn(50, 2, dtype=torch.float64))
    gmm.save(tmp_path / "g")
    with pytest.raises(ValueError, match="path model"):
        load_teacher(tmp_path / "g")
    with pytest.raises(ValueError, match="teacher"):
        _ = ConsistencyModel((2,), "training", network=TINY).teacher_field


def test_cd_with_a_teacher_run_directory(tmp_path):
    """``teacher=RUN_DIR`` loads a saved path model's field on first use (CLI: ``--set
    teacher=...``); the distillation loss then runs against it."""
    cfm = build_model("cfm", (2,), network=TINY)
    cfm.save(tmp_path / "cfm")
    cd = ConsistencyModel((2,), network=TINY, teacher=str(tmp_path / "cfm"))
    assert not hasattr(cd, "teacher_net")
    loss = cd.loss(torch.randn(16, 2))
    assert loss.shape == (16,) and torch.isfinite(loss).all()
    assert cd.teacher_field.path.schedule == cd.path.schedule
