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


def test_rectified_distillation_draws_batches_from_one_pair_set_with_a_frozen_teacher():
    """With a frozen teacher the pairs are solved once (``n_pairs`` of them, seeded by
    ``pair_seed``, in chunks): every batch is rows of that set, whose targets are the teacher's
    ODE map of its noise; the same seed solves the same set again (a resumed run), a new
    teacher drops it, and without a frozen teacher or with ``n_pairs=None`` each batch is
    solved afresh."""
    o = GaussianMixtureOracle([1.0], [[1.0, -1.0]], [[0.2, 0.3]], path=AffinePath("linear"))
    kw = {"network": TINY, "teacher_network": TINY, "pair_steps": 4, "n_pairs": 1500}  # 2 chunks
    m = RectifiedDistillation((2,), **kw).double()
    m.set_teacher(o)
    eps, target = m.batch_pairs(64)
    set_eps, set_target = m._pair_set
    assert set_eps.shape == (1500, 2)
    grid = torch.linspace(1.0, 0.0, 5, dtype=torch.float64)
    ref = sample_path(o, set_eps.shape, sampler="rk4", grid=grid, x_init=set_eps).x
    torch.testing.assert_close(set_target, ref)
    rows = (eps[:, None, :] == set_eps[None]).all(-1)
    assert rows.any(1).all()  # every batch row is a row of the set
    idx = rows.float().argmax(1)
    torch.testing.assert_close(target, set_target[idx])
    m.batch_pairs(64)
    assert m._pair_set[0] is set_eps  # solved once
    again = RectifiedDistillation((2,), **kw).double()
    again.set_teacher(o).batch_pairs(1)
    torch.testing.assert_close(again._pair_set[0], set_eps)
    m.set_teacher(o)
    assert m._pair_set is None
    fresh = RectifiedDistillation((2,), network=TINY, teacher_network=TINY, n_pairs=None).double()
    fresh.set_teacher(o).batch_pairs(8)
    assert fresh._pair_set is None
    internal = RectifiedDistillation((2,), network=TINY, teacher_network=TINY).double()
    assert internal.has_internal_teacher
    internal.batch_pairs(8)
    assert internal._pair_set is None


@pytest.mark.parametrize("bad", [{"n_pairs": 0}, {"n_pairs": 2.5}, {"pair_seed": -1}])
def test_rectified_distillation_refuses_bad_pair_options(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        RectifiedDistillation((2,), network=TINY, teacher_network=TINY, **bad)


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
