"""optimize_grid: a fitted grid beats the default on draws it was not fitted on; saved as JSON."""

from __future__ import annotations

import pytest
import torch

from probpath.sampling import get_sampler, make_grid, run_sampler
from probpath.sampling.optimize import load_grid, optimize_grid, save_grid
from probpath.sampling.samplers import default_grid

from .conftest import make_oracle


def _rms_on_fresh_draws(o, ts, sampler="unipc"):
    """Error of ``ts`` vs a 400-step DPM-Solver++(3M) solve on 200 draws the fit never saw
    (third order at 400 steps: error ~1e-8, far below the 1e-2..1e-1 errors compared)."""
    x = o.path.prior_sample((200, 2), generator=torch.Generator().manual_seed(123))
    x = x.double()
    fine = make_grid(o.path, 400, "log_snr")
    ref = run_sampler(get_sampler("dpmpp_3m"), o, x, fine, final_extrapolate=True)
    out = run_sampler(get_sampler(sampler), o, x, ts)
    return float((out - ref).pow(2).sum(1).mean().sqrt())


@pytest.mark.parametrize("schedule", ["ddpm", "linear"])
def test_fitted_grid_beats_the_default_on_fresh_draws(schedule):
    o = make_oracle(schedule)
    fit = optimize_grid(
        o, 4, (2,), sampler="unipc", n=64, max_evals=80, generator=torch.Generator().manual_seed(0)
    )
    assert fit.ts.shape == (5,) and (fit.ts[1:] < fit.ts[:-1]).all()
    assert fit.error <= fit.initial_error and fit.nfe > 80  # 4 NFE per trial run, counted
    default = default_grid(o.path, 4, get_sampler("unipc"))
    torch.testing.assert_close(fit.ts[[0, -1]], default[[0, -1]])  # the ends stay fixed
    # held-out draws: the fitted grid must generalise (no tolerance: a strict improvement)
    assert _rms_on_fresh_draws(o, fit.ts) < _rms_on_fresh_draws(o, default)


def test_grids_json_round_trip(tmp_path):
    o = make_oracle("vp")
    fit = optimize_grid(o, 3, (2,), sampler="dpmpp_2m", n=16, max_evals=10)
    assert load_grid(tmp_path, "dpmpp_2m", 3) is None
    save_grid(tmp_path, fit)
    torch.testing.assert_close(load_grid(tmp_path, "dpmpp_2m", 3), fit.ts, rtol=0, atol=0)
    assert load_grid(tmp_path, "dpmpp_2m", 4) is None


def test_bad_arguments():
    o = make_oracle("vp")
    with pytest.raises(ValueError, match="deterministic"):
        optimize_grid(o, 4, (2,), sampler="ancestral")
    with pytest.raises(ValueError, match="steps"):
        optimize_grid(o, 1, (2,))
    with pytest.raises(ValueError, match="sampler must be one of"):
        optimize_grid(o, 4, (2,), sampler="nosuch")


def test_cli_grid_optimized(tmp_path):
    from typer.testing import CliRunner

    from probpath.catalog import CATALOG
    from probpath.cli.main import app

    if "cfm" not in CATALOG:
        pytest.skip("cfm not in the catalog")
    run = tmp_path / "cfm"
    inv = CliRunner().invoke
    args = ["fit", "cfm", "--data", "moons", "--n", "200", "--steps", "3", "--quick"]
    assert inv(app, [*args, "--out", str(run)]).exit_code == 0
    cmd = ["sample", str(run), "--n", "8", "--sampler", "unipc", "--steps", "3"]
    res = inv(app, [*cmd, "--grid", "optimized", "--out", str(tmp_path / "a.npy")])
    assert res.exit_code == 0, res.output
    assert "optimized unipc grid" in res.stderr and (run / "grids.json").is_file()
    assert load_grid(run, "unipc", 3) is not None
    bad = inv(app, ["sample", str(run), "--sampler", "nosuch", "--out", str(tmp_path / "b.npy")])
    # one line, exit 2, naming the bad value and the valid names
    assert bad.exit_code == 2 and "'nosuch'" in bad.stderr and "dpmpp_2m" in bad.stderr


def test_objectives_in_closed_form():
    """The per-draw objectives on known errors: e = 1..20. RMS = sqrt(sum k^2 / 20) =
    sqrt(20 * 21 * 41 / 6 / 20) = sqrt(143.5); the largest tenth is {19, 20}, its RMS
    sqrt((361 + 400) / 2) = sqrt(380.5); the max 20. Exact in float64 up to round-off."""
    from probpath.sampling.optimize import OBJECTIVES

    e = torch.arange(1.0, 21.0, dtype=torch.float64)
    assert abs(OBJECTIVES["rms"](e) - 143.5**0.5) < 1e-12
    assert abs(OBJECTIVES["tail"](e) - 380.5**0.5) < 1e-12
    assert OBJECTIVES["max"](e) == 20.0
    # fewer than ten draws: the tail is the single largest error
    assert OBJECTIVES["tail"](e[:5]) == 5.0


@pytest.mark.parametrize("objective", ["rms", "tail", "max"])
def test_high_noise_times_stay_fixed_and_the_fit_never_worsens_the_check_draws(objective):
    """``fixed_above=1`` (sigma_data = 1 here) keeps ``t_max`` and every start time at
    ``sigma_tilde >= 1`` exactly (the draws pick their modes there); only later times move.
    The returned grid is never worse than the start on the check draws (it is the start
    itself otherwise). ``fixed_above=None`` (the default): only ``t_max`` stays."""
    o = make_oracle("vp")
    start = default_grid(o.path, 8, get_sampler("unipc"), dim=2)  # optimize_grid's start
    v = o.path(start[:-1])
    k = int((v.sigma / v.alpha >= 1.0).sum())
    # t_max, the jump target 2 sqrt(max(2, 0.4 * 8)) = 2 sqrt(3.2) = 3.58 and, log-SNR spaced
    # from it down to sigma_min_rule(8) = 0.2 (5/8)^log2(sqrt 10) = 0.092 over 6 steps (ratio
    # 1.84 each), 1.94 and 1.05; the next level is 0.57 < 1
    assert k == 4
    fit = optimize_grid(
        o,
        8,
        (2,),
        n=64,
        max_evals=40,
        objective=objective,
        fixed_above=1.0,
        generator=torch.Generator().manual_seed(1),
    )
    torch.testing.assert_close(fit.ts[:k], start[:k], rtol=0, atol=0)
    assert fit.ts[-1] == start[-1] and (fit.ts[1:] < fit.ts[:-1]).all()
    assert fit.error <= fit.initial_error
    free = optimize_grid(o, 8, (2,), n=64, max_evals=40, generator=torch.Generator().manual_seed(1))
    assert free.ts[0] == start[0]  # t_max itself always stays
    with pytest.raises(ValueError, match="fixed_above"):
        optimize_grid(o, 8, (2,), fixed_above=0.0)


def test_bad_objective():
    o = make_oracle("vp")
    with pytest.raises(ValueError, match="objective must be one of"):
        optimize_grid(o, 4, (2,), objective="median")


def test_accept_fit_rule():
    """The check's rule on known per-draw errors: a lower RMS alone is not enough, the number
    of draws beyond ``distance`` must not grow; a failed start accepts any finite fit."""
    from probpath.sampling.optimize import accept_fit, far_draws

    start = torch.tensor([0.1, 0.2, 0.3, 2.0], dtype=torch.float64)  # RMS 1.02, one far draw
    better = torch.tensor([0.05, 0.05, 0.05, 1.9], dtype=torch.float64)
    switch = torch.tensor([0.05, 0.05, 1.2, 1.2], dtype=torch.float64)  # RMS 0.85, two far
    assert far_draws(start, 1.0) == 1 and far_draws(switch, 1.0) == 2
    assert accept_fit(start, better, 1.0)
    assert (switch.pow(2).mean() < start.pow(2).mean()) and not accept_fit(start, switch, 1.0)
    assert not accept_fit(start, start, 1.0)  # not strictly better
    assert not accept_fit(start, None, 1.0) and accept_fit(None, better, 1.0)


def test_a_large_check_rejects_a_fit_that_a_small_one_lets_through():
    """The seed-9 failure of bench_samplers in miniature, on the exact mixture: a fit on 16
    draws (6 steps of UniPC on DDPM, high-noise times free, RMS objective) that is *worse* on
    4096 fresh draws than the default grid, in RMS and in draws ending more than half the
    smallest distance between the means away (mode switches). A check on 16 other draws
    accepts it; one on 1024 rejects it and returns the default grid (the same fit: the fit draws
    come first from the generator; on 1024 draws its RMS is already the worse, switches
    included). Deterministic: float64, seeded generators."""
    o = make_oracle("ddpm")
    mu = o.means
    gap = float((torch.cdist(mu, mu) + 1e30 * torch.eye(3, dtype=mu.dtype)).min())
    distance = 0.5 * gap  # 1.25
    start = default_grid(o.path, 6, get_sampler("unipc"), dim=2)
    kw = dict(n=16, max_evals=60, fixed_above=None, objective="rms", switch_distance=distance)
    small = optimize_grid(o, 6, (2,), n_check=16, generator=torch.Generator().manual_seed(3), **kw)
    assert not torch.equal(small.ts, start)  # the small check let the fit through

    x = o.path.prior_sample((4096, 2), generator=torch.Generator().manual_seed(99))
    x = x.double()
    ref = run_sampler(
        get_sampler("dpmpp_3m"), o, x, make_grid(o.path, 400, "log_snr"), final_extrapolate=True
    )

    def errors(ts):
        return (run_sampler(get_sampler("unipc"), o, x, ts) - ref).pow(2).sum(1).sqrt()

    e_start, e_fit = errors(start), errors(small.ts)
    assert e_fit.pow(2).mean() > e_start.pow(2).mean()  # worse on fresh draws ...
    assert (e_fit > distance).sum() > (e_start > distance).sum()  # ... with more mode switches
    large = optimize_grid(
        o, 6, (2,), n_check=1024, generator=torch.Generator().manual_seed(3), **kw
    )
    torch.testing.assert_close(large.ts, start, rtol=0, atol=0)  # rejected: the start returned
    assert large.error == large.initial_error and large.far == large.initial_far
