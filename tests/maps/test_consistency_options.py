"""Consistency-model options: students started from their teacher's network (``init_from_teacher``,
``prediction``) and the loss weighting."""

from __future__ import annotations

import pytest
import torch

from probpath.maps import ConsistencyModel
from probpath.maps.consistency import boundary_coefficients
from probpath.paths import AffinePath, PathField
from probpath.sampling.path_model import build_path_network


def _teacher(prediction="velocity", hidden=(16, 16)):
    torch.manual_seed(0)
    net = build_path_network((2,), 0, {"hidden": list(hidden)})
    return PathField(net, AffinePath("linear"), prediction)


def test_a_student_started_from_its_teacher_is_the_teachers_denoiser_blended_with_x():
    """With the teacher's kind, ``f(x, t) = c_skip x + (1 - c_skip) x0_hat_teacher(x, t)`` at
    every ``t`` (the same network and the same conversion); at ``t = 1`` on the linear path
    ``c_skip = 0``, so the 1-step sample starts at the teacher's ``E[x0 | x_1]`` estimate. The
    EMA target starts equal to the online network."""
    teacher = _teacher()
    cd = ConsistencyModel((2,), network={"hidden": [16, 16]}, prediction="velocity")
    cd.set_teacher(teacher)
    cd.init_from_teacher()
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.0, 1.0, 32)
    with torch.no_grad():
        x0_hat = teacher.predict(x, t, as_="x0")
        c_skip, _ = boundary_coefficients(cd.path, t, cd.sigma_data, cd.path.t_min)
        want = c_skip[:, None] * x + (1 - c_skip[:, None]) * x0_hat
        torch.testing.assert_close(cd.consistency(x, t), want)
        torch.testing.assert_close(cd.consistency(x, t, cd.target_network()), want)
        ones = torch.ones(32)
        torch.testing.assert_close(cd.consistency(x, ones), teacher.predict(x, ones, as_="x0"))


def test_init_from_teacher_refuses_what_it_cannot_copy():
    """Another prediction kind, another architecture, or a teacher without a plain network
    (a preconditioned one) is a ValueError that names the fix, and nothing is copied."""
    cd = ConsistencyModel((2,), network={"hidden": [16, 16]}, prediction="velocity")
    before = {k: v.clone() for k, v in cd.network.state_dict().items()}
    with pytest.raises(ValueError, match="prediction='eps'|Prediction.EPS"):
        cd.set_teacher(_teacher("eps")).init_from_teacher()
    with pytest.raises(ValueError, match="another architecture"):
        cd.set_teacher(_teacher(hidden=(8,))).init_from_teacher()
    free = ConsistencyModel((2,), network={"hidden": [16, 16]})  # prediction=None: the free F
    with pytest.raises(ValueError, match="prediction"):
        free.set_teacher(_teacher()).init_from_teacher()
    pre = PathField(build_path_network((2,), 0, {"hidden": [16, 16]}), cd.path, "x0", True)
    x0_student = ConsistencyModel((2,), network={"hidden": [16, 16]}, prediction="x0")
    with pytest.raises(ValueError, match="preconditioning"):
        x0_student.set_teacher(pre).init_from_teacher()
    for k, v in cd.network.state_dict().items():
        assert torch.equal(v, before[k])


def test_an_unknown_prediction_is_refused():
    with pytest.raises(ValueError, match="prediction"):
        ConsistencyModel((2,), prediction="noise")


def test_uniform_weighting_drops_the_inverse_gap_factor():
    """The same draws (same seed) with ``weighting="uniform"`` and the default: per sample the
    ratio of the two losses is ``1 / (N (t_hi - t_lo))`` of the interval drawn, one of the
    grid's ``N`` values (consistency training: no teacher, the draws are the seed's alone)."""
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    losses = {}
    for weighting in ("inverse_gap", "uniform"):
        torch.manual_seed(0)
        m = ConsistencyModel((2,), "training", network={"hidden": [8]}, weighting=weighting)
        losses[weighting] = m.map_loss(x0).detach().double()
    ts = m.grid()
    allowed = 1.0 / ((len(ts) - 1) * (ts[:-1] - ts[1:]))
    ratio = losses["inverse_gap"] / losses["uniform"]
    gap = (ratio[:, None] / allowed[None] - 1.0).abs().amin(1)
    assert float(gap.max()) < 1e-5  # float32 losses
    assert len(torch.unique(ratio.round(decimals=3))) > 1  # several intervals were drawn


def test_renoise_time_sets_the_first_renoising_and_a_uniform_grid_below_it():
    """``renoise_time = t_r``: 2 steps are ``[t_max, t_r]``; 3 steps add the midpoint of
    ``[t_min, t_r]`` (the uniform grid from ``t_r`` down); 1 step stays ``[t_max]``; ``None``
    keeps Alg. 1's uniform grid on ``[t_min, t_max]``. Sampling with the default steps uses
    exactly these times (same generator, same output as passing ``times``)."""
    cd = ConsistencyModel((2,), network={"hidden": [8]}, renoise_time=0.8, steps=2)
    t_min, t_max = cd.path.t_min, cd.path.t_max
    assert cd.sample_times(1) == [t_max]
    assert cd.sample_times(2) == [t_max, 0.8]
    assert cd.sample_times(3) == pytest.approx([t_max, 0.8, (0.8 + t_min) / 2])
    plain = ConsistencyModel((2,), network={"hidden": [8]})
    assert plain.sample_times(2) == pytest.approx([t_max, (t_max + t_min) / 2])
    cd.eval()
    a = cd.sample(16, generator=torch.Generator().manual_seed(3))
    b = cd.sample(16, generator=torch.Generator().manual_seed(3), times=[t_max, 0.8])
    torch.testing.assert_close(a, b)
    assert cd.sampling_nfe == 2


@pytest.mark.parametrize("bad", ["soon", 1.5, 1.0, 0.0, 1e-4])
def test_renoise_time_outside_the_path_is_a_value_error(bad):
    """A time that is not a number, or not strictly inside ``(t_min, t_max)``, is refused at
    construction with the argument's name."""
    with pytest.raises(ValueError, match="renoise_time"):
        ConsistencyModel((2,), network={"hidden": [8]}, renoise_time=bad)
