"""sample_path: counted NFE, reproducibility, callbacks, grids, validation."""

from __future__ import annotations

import pytest
import torch

from probpath.paths import FunctionField
from probpath.sampling import SAMPLERS, make_grid, sample_path

from .conftest import make_oracle

# NFE with `steps` steps and the final step to sigma = 0 (1 NFE): derived per method
NFE = {
    "euler": lambda n: n,
    "ddim": lambda n: n,
    "dpmpp_2m": lambda n: n,
    "dpmpp_3m": lambda n: n,
    "dpm_solver_1": lambda n: n,
    "heun": lambda n: 2 * (n - 1) + 1,
    "edm_heun": lambda n: 2 * (n - 1) + 1,
    "dpm_solver_2": lambda n: 2 * (n - 1) + 1,
    "dpm_solver_3": lambda n: 3 * (n - 1) + 1,
    "rk4": lambda n: 4 * (n - 1) + 1,
    "ancestral": lambda n: n,
    "euler_maruyama": lambda n: n,
    "pc": lambda n: 2 * n,
}


@pytest.mark.parametrize("name", list(NFE))
def test_nfe_is_counted_and_sampling_is_reproducible(name):
    o = make_oracle("vp")
    runs = [
        sample_path(
            o,
            (16, 2),
            sampler=name,
            steps=5,
            generator=torch.Generator().manual_seed(1),
            dtype=torch.float64,
        )
        for _ in range(2)
    ]
    assert runs[0].nfe == NFE[name](5)
    assert runs[0].x.shape == (16, 2) and torch.isfinite(runs[0].x).all()
    torch.testing.assert_close(runs[0].x, runs[1].x, rtol=0, atol=0)


def test_callback_sees_every_step_and_adaptive_counts():
    o = make_oracle("vp")
    seen = []
    out = sample_path(
        o,
        (4, 2),
        sampler="dpmpp_2m",
        steps=6,
        callback=seen.append,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    )
    assert [s["i"] for s in seen] == list(range(6))
    assert seen[-1]["t_next"] == 0.0 and torch.equal(seen[-1]["x"], out.x)
    ad = sample_path(
        o,
        (4, 2),
        sampler="adaptive",
        dtype=torch.float64,
        rtol=1e-4,
        atol=1e-4,
        generator=torch.Generator().manual_seed(0),
    )
    assert ad.nfe > 6


def test_flow_path_starts_at_alpha_zero():
    # linear path: alpha(1) = 0, lambda = -inf; the data-form solvers stay finite
    o = make_oracle("linear")
    for name in ("dpmpp_2m", "dpmpp_3m", "euler", "heun"):
        out = sample_path(
            o,
            (64, 2),
            sampler=name,
            steps=8,
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.isfinite(out.x).all(), name


def test_function_field_plugs_in_and_cond_passes():
    o = make_oracle("vp")
    calls = []

    def eps_fn(x, t, cond):
        calls.append(cond)
        return o.predict(x, t, "eps")

    f = FunctionField(eps_fn, o.path, "eps")
    a = sample_path(
        f,
        (8, 2),
        steps=4,
        cond="c",
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    )
    b = sample_path(
        o, (8, 2), steps=4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(a.x, b.x)
    assert calls == ["c"] * 4


def test_grids():
    o = make_oracle("ddpm")
    for spacing in ("uniform", "log_snr", "edm", "quadratic"):
        ts = make_grid(o.path, 7, spacing)
        assert ts.shape == (8,) and ts[0] == 1.0 and ts[-1] == 0.0 and ts[-2] == 1e-3
        assert (ts[1:] < ts[:-1]).all()
    lam = o.path.log_snr(make_grid(o.path, 5, "log_snr", final_zero=False))
    torch.testing.assert_close(lam.diff(), lam.diff()[:1].expand(5), rtol=1e-8, atol=1e-8)
    v = o.path(make_grid(o.path, 5, "edm", final_zero=False))
    root = (v.sigma / v.alpha) ** (1 / 7)
    torch.testing.assert_close(root.diff(), root.diff()[:1].expand(5), rtol=1e-8, atol=1e-8)
    # sigma_tilde range: one jump from t = 1 to sigma_max, spacing down to sigma_min, then 0
    ts = make_grid(o.path, 6, "log_snr", sigma_max=5.0, sigma_min=0.02)
    v = o.path(ts[:-1])
    st = v.sigma / v.alpha
    assert ts[0] == 1.0 and ts[-1] == 0.0 and ts.shape == (7,)
    torch.testing.assert_close(st[1:][[0, -1]], torch.tensor([5.0, 0.02], dtype=torch.float64))
    ve = make_grid(make_oracle("ve").path, 4, "uniform")
    assert ve.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_validation_errors():
    o = make_oracle("vp")
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample_path(o, (2, 2), sampler="nope")
    with pytest.raises(ValueError, match="n >= 1"):
        sample_path(o, (0, 2))
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_path(o, (2, 2), grid=[0.1, 0.5])
    with pytest.raises(ValueError, match="Field"):
        SAMPLERS["euler"](lambda x, t: x, torch.zeros(2, 2), [1.0, 0.0])
    with pytest.raises(ValueError, match="NaN"):
        SAMPLERS["euler"](o, torch.full((2, 2), float("nan")), [1.0, 0.0])
    with pytest.raises(ValueError, match="steps"):
        make_grid(o.path, 0)
