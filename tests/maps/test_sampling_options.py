"""Options of the few-step models chosen for short CPU budgets (issue 14, third session):
MeanFlow's endpoint share, the two-time network's time scale, and clipping of the data
estimate in multistep consistency sampling."""

from __future__ import annotations

import math

import pytest
import torch

from probpath.maps import ConsistencyModel, MeanFlow
from probpath.maps.base import check_clip
from probpath.maps.networks import TwoTimeMLP


def test_endpoint_share_draws_the_one_step_pair_at_its_rate():
    """A share ``e`` of the pairs is exactly ``(r, t) = (t_min, t_max)``, the pair one-step
    sampling queries; the paper's logit-normal sampler draws it with probability 0 (both ends
    are limits of the sigmoid). The count is Binomial(n, e): within 5 standard errors."""
    torch.manual_seed(0)
    n, e = 20_000, 0.1
    model = MeanFlow((2,), ratio_r_neq_t=0.25, endpoint_share=e, network={"hidden": [8]})
    r, t = model.sample_rt(n)
    ends = (r == model.path.t_min) & (t == model.path.t_max)
    se = math.sqrt(n * e * (1 - e))
    assert abs(int(ends.sum()) - n * e) < 5 * se
    # the other r < t pairs keep their share: ratio - e of all rows (binomial, 5 s.e.)
    off = (r < t) & ~ends
    p = 0.25 - e
    assert abs(int(off.sum()) - n * p) < 5 * math.sqrt(n * p * (1 - p))
    assert bool((r <= t).all())


def test_endpoint_share_off_keeps_the_papers_sampler():
    """``endpoint_share=0`` draws the same pairs as before the option (same random stream)."""
    kw = {"ratio_r_neq_t": 0.25, "network": {"hidden": [8]}}
    torch.manual_seed(3)
    r0, t0 = MeanFlow((2,), **kw).sample_rt(1000)
    torch.manual_seed(3)
    r1, t1 = MeanFlow((2,), endpoint_share=0.0, **kw).sample_rt(1000)
    assert torch.equal(r0, r1) and torch.equal(t0, t1)
    assert not bool(((r0 == 0) & (t0 == 1)).any())


def test_endpoint_share_above_the_r_neq_t_share_is_refused():
    with pytest.raises(ValueError, match="endpoint_share"):
        MeanFlow((2,), ratio_r_neq_t=0.1, endpoint_share=0.2)


def test_time_scale_sets_the_embedding_frequency():
    """With ``time_scale = s`` the sinusoidal features are ``cos / sin(s t w_k)``, ``w_k <= 1``,
    so ``|d emb / dt| <= s`` per feature: checked by central differences (exact up to
    ``O(h^2 s^3)`` = 1e-9 for ``h = 1e-4``, ``s = 10``; float64)."""
    net = TwoTimeMLP(2, hidden=(8,), time_scale=10.0).double()
    t = torch.rand(50, dtype=torch.float64)
    h = 1e-4
    d = (net.embed_t(t + h) - net.embed_t(t - h)) / (2 * h)
    assert float(d.abs().max()) <= 10.0 + 1e-6
    assert float(d.abs().max()) > 5.0  # the top frequency (w = 1) is reached
    with pytest.raises(ValueError, match="time_scale"):
        TwoTimeMLP(2, time_scale=0.0)


def test_check_clip_names_the_argument():
    assert check_clip(None) is None
    assert check_clip([-1, 1]) == (-1.0, 1.0)
    for bad in ((1.0, -1.0), (0.0,), "ab"):
        with pytest.raises(ValueError, match="clip_x0"):
            check_clip(bad)


def test_clipped_consistency_sampling_stays_in_range_and_is_a_no_op_for_a_wide_range():
    """Every ``x0`` is clamped before it is re-noised and at the end: samples lie in the range;
    a range wider than every intermediate value changes nothing (same generator: bit-equal)."""
    torch.manual_seed(0)
    model = ConsistencyModel((3,), mode="training", network={"hidden": [8]}).eval()
    with torch.no_grad():  # a large output scale pushes x0 far out of [-1, 1]
        for p in model.network.parameters():
            p.mul_(20.0)

    def draw(**kw):
        return model.sample(200, generator=torch.Generator().manual_seed(1), steps=3, **kw)

    free = draw()
    assert float(free.abs().max()) > 1.0
    clipped = draw(clip_x0=(-1.0, 1.0))
    assert float(clipped.min()) >= -1.0 and float(clipped.max()) <= 1.0
    assert torch.equal(draw(clip_x0=(-1e9, 1e9)), free)


def test_meanflow_time_scale_is_saved_and_checked_at_load():
    """The time scale of MeanFlow's embedding is part of its state: a run trained at another
    scale (the default was 1000 before it became 10) is refused with the option to set,
    and a checkpoint saved before the scale was recorded is refused as incomplete."""
    state = MeanFlow((2,)).state_dict()
    assert float(state["time_scale"]) == 10.0
    with pytest.raises(RuntimeError, match=r"network=\{'time_scale': 10\}"):
        MeanFlow((2,), network={"time_scale": 1000.0}).load_state_dict(state)
    old = {k: v for k, v in state.items() if k != "time_scale"}
    with pytest.raises(RuntimeError, match="time_scale"):
        MeanFlow((2,)).load_state_dict(old)
    MeanFlow((2,)).load_state_dict(state)  # the same scale loads
