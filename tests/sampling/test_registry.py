"""One test module over the sampler registry: a new sampler is covered by adding its spec.

For every :class:`~probpath.sampling.loop.SamplerSpec` in ``SAMPLER_SPECS``: the empirical
order on the exact Gaussian-mixture field, the NFE formula against the counted NFE,
determinism with a generator, the callback's contents, and ``ValueError`` for bad options.
"""

from __future__ import annotations

import math

import pytest
import torch

from probpath.paths import count_nfe
from probpath.sampling import SAMPLER_SPECS, get_sampler, make_grid, run_sampler, sample_path

from .conftest import make_oracle

SPECS = list(SAMPLER_SPECS)
# a bad value for every option-checking sampler (a spec with a `check` must appear here)
BAD = {
    "adaptive": {"rtol": -1.0},
    "ancestral": {"variance": "huge"},
    "ddim": {"eta": -0.5},
    "pc": {"n_corrector": -1},
    "edm_heun": {"churn": -1.0},
    "langevin": {"step_size": 0.0},
    "annealed_langevin": {"n_steps": 0},
    "unipc": {"variant": "bh3"},
    "deis": {"order": 4},
    "interpolant_sde": {"scale": -1.0},
}
# options that keep the Langevin samplers cheap in these tests
CHEAP = {"langevin": {"n_steps": 3}, "annealed_langevin": {"n_steps": 3}}


@pytest.fixture(scope="module")
def order_problem():
    # linear path, 200 starts at t = 0.9 integrated to t = 0.1 (no step to sigma = 0, so only
    # the solver's own error), against dopri5 at rtol = atol = 1e-11 (error ~1e-11, far below
    # the 2e-5 .. 2e-2 errors measured here)
    oracle = make_oracle("linear")
    x = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = run_sampler(get_sampler("adaptive"), oracle, x, [0.9, 0.1], rtol=1e-11, atol=1e-11)
    return oracle, x, ref


def _slope(problem, name, options):
    """Slope of log(RMS error) vs log(NFE) between 32 and 64 steps (>= 15 steps: no
    lower-order final steps; the finest pair is in the asymptotic regime for every solver)."""
    oracle, x, ref = problem
    spec = get_sampler(name)
    errs, nfes = [], []
    for n in (32, 64):
        ts = make_grid(oracle.path, n, spec.spacing, t_max=0.9, t_min=0.1, final_zero=False)
        field = count_nfe(oracle)
        out = run_sampler(spec, field, x, ts, **options)
        errs.append(float((out - ref).pow(2).sum(1).mean().sqrt()))
        nfes.append(field.nfe)
    assert nfes[1] == 2 * nfes[0]
    return -math.log(errs[1] / errs[0]) / math.log(2.0), errs


@pytest.mark.parametrize("name", [n for n in SPECS if SAMPLER_SPECS[n].order is not None])
def test_empirical_order_matches_the_spec(order_problem, name):
    slope, errs = _slope(order_problem, name, {})
    # tolerance 0.3: the same as tests/sampling/test_order.py (higher-order error terms at
    # 32-64 steps move the slope by up to ~0.2 on this problem)
    assert abs(slope - SAMPLER_SPECS[name].order) <= 0.3, (name, slope, errs)


# UniPC: predictor of order p, + 1 with the corrector (Zhao et al. 2023, Thm. 3.2); DEIS tAB of
# order p uses a degree p - 1 polynomial in t (Zhang & Chen 2023)
VARIANTS = [
    ("unipc", {"order": p, "variant": v, "corrector": c}, p + c)
    for p in (1, 2, 3)
    for v in ("bh1", "bh2")
    for c in (False, True)
] + [("deis", {"order": p}, p) for p in (1, 2, 3)]


@pytest.mark.parametrize("name, options, order", VARIANTS)
def test_empirical_order_of_solver_variants(order_problem, name, options, order):
    slope, errs = _slope(order_problem, name, options)
    assert abs(slope - order) <= 0.3, (name, options, slope, errs)


def test_unipc_without_corrector_is_dpmpp():
    # UniP-2 with rho = 1/2 and B(h) = e^{-h} - 1 (bh2) is DPM-Solver++(2M) term by term
    o = make_oracle("vp")
    x = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ts = make_grid(o.path, 12, "log_snr")
    a = run_sampler(get_sampler("unipc"), o, x, ts, corrector=False, order=2, variant="bh2")
    b = run_sampler(get_sampler("dpmpp_2m"), o, x, ts)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)  # round-off of a few terms of O(1)


@pytest.mark.parametrize("name", SPECS)
def test_nfe_formula_is_the_count(name):
    spec = SAMPLER_SPECS[name]
    o = make_oracle("vp")
    opts = CHEAP.get(name, {})
    for final_zero in (True, False):
        out = sample_path(
            o,
            (8, 2),
            sampler=name,
            steps=5,
            final_zero=final_zero,
            generator=torch.Generator().manual_seed(0),
            dtype=torch.float64,
            **opts,
        )
        expected = spec.nfe(5, final_zero=final_zero, **opts)
        if expected is None:  # adaptive: counted, not predictable
            assert spec.fixed_steps is not None and out.nfe > len(out.ts) - 1
        else:
            assert out.nfe == expected, (final_zero, out.nfe, expected)


@pytest.mark.parametrize("name", SPECS)
def test_same_generator_same_result(name):
    o = make_oracle("vp")
    opts = CHEAP.get(name, {})

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
        return sample_path(o, x.shape, sampler=name, steps=4, x_init=x, generator=g, **opts).x

    a, b, c = run(1), run(1), run(2)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    if SAMPLER_SPECS[name].deterministic:
        torch.testing.assert_close(a, c, rtol=0, atol=0)  # no noise drawn after the start
    else:
        assert not torch.equal(a, c)


@pytest.mark.parametrize("name", SPECS)
def test_callback_contents(name):
    o = make_oracle("vp")
    seen = []
    out = sample_path(
        o,
        (4, 2),
        sampler=name,
        steps=5,
        callback=seen.append,
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
        **CHEAP.get(name, {}),
    )
    ts = out.ts.tolist()
    assert [s["i"] for s in seen] == list(range(len(ts) - 1))
    assert [s["t"] for s in seen] == ts[:-1] and [s["t_next"] for s in seen] == ts[1:]
    assert torch.equal(seen[-1]["x"], out.x)
    for s in seen:
        assert s["x"].shape == (4, 2)
        # the adaptive solver has no x0_hat on its interior steps (it would cost an NFE)
        assert s["x0_hat"] is None or s["x0_hat"].shape == (4, 2)
    assert seen[-1]["x0_hat"] is not None  # the final denoising step always has one


@pytest.mark.parametrize("name", SPECS)
def test_bad_options_raise_value_error(name):
    spec = SAMPLER_SPECS[name]
    o = make_oracle("vp")
    with pytest.raises(ValueError, match="takes no option"):
        sample_path(o, (2, 2), sampler=name, steps=2, no_such_option=1)
    if spec.check is not None:
        assert name in BAD, f"add a bad option value for {name!r} to BAD"
        with pytest.raises(ValueError, match=next(iter(BAD[name]))):
            sample_path(o, (2, 2), sampler=name, steps=2, **BAD[name])


def test_bad_name_is_one_value_error():
    from probpath.velocity import FlowMatching

    with pytest.raises(ValueError, match="sampler must be one of"):
        get_sampler("nosuch")
    m = FlowMatching((2,), network={"hidden": [8]})
    with pytest.raises(ValueError, match="sampler must be one of"):
        m.sample(2, sampler="nosuch")


def test_naming_the_default_sampler_is_not_naming_it():
    from probpath.score import DiffusionModel

    m = DiffusionModel((2,), network={"hidden": [8]}, num_steps=20)
    a = m.sample(8, generator=torch.Generator().manual_seed(0))
    b = m.sample(8, sampler=m.default_sampler, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "name, options",
    [("unipc", {"order": k, "variant": v}) for k in (1, 2, 3) for v in ("bh1", "bh2")]
    + [("deis", {"order": 3}), ("dpmpp_3m", {})],
)
def test_multistep_from_alpha_zero_is_finite(name, options):
    # the linear path starts at alpha(1) = 0, lambda = -inf: that evaluation has r = -inf in
    # UniPC's system and must drop out, not make it singular
    o = make_oracle("linear")
    ts = make_grid(o.path, 6, "uniform", t_min=0.0)
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = run_sampler(get_sampler(name), o, x, ts, **options)
    assert torch.isfinite(out).all()


def test_range_rule_final_step_blur():
    """What the default range rule trades away, in closed form, and how sigma_data removes it.
    For one Gaussian coordinate N(mu, v) the probability-flow ODE keeps x_tilde ~ N(mu, v +
    sigma_tilde^2) exactly, and the final denoising step x0_hat = mu + v / (v + s^2) (x_tilde -
    mu) at s = sigma_tilde_min leaves std sqrt(v) * sqrt(v / (v + s^2)). With v = 1e-3 and 20
    steps, without sigma_data (taken as 1): s = 0.2 * (5/20)^log2(sqrt 10) = 0.02, ratio
    sqrt(1e-3 / 1.4e-3) = 0.845 of the true std. With sigma_data = sqrt(v) the range scales
    with the data, s = 0.02 sqrt(v), down to the path's floor sigma_tilde(t_min = 1/N) ~ 0.01
    (DDPM linear: sigma^2 ~ beta_1 = 1e-4): ratio sqrt(1e-3 / 1.1e-3) = 0.953."""
    from probpath.paths import AffinePath, GaussianMixtureOracle
    from probpath.sampling.samplers import _sigma_tilde_floor, sigma_min_rule

    v = 1e-3
    o = GaussianMixtureOracle(
        [1.0], torch.zeros(1, 1), torch.full((1, 1, 1), v), AffinePath("ddpm")
    )
    n = 20000
    for sigma_data in (None, math.sqrt(v)):
        g = torch.Generator().manual_seed(0)
        out = sample_path(
            o, (n, 1), steps=20, generator=g, dtype=torch.float64, sigma_data=sigma_data
        )
        s = max(sigma_min_rule(20, sigma_data or 1.0), _sigma_tilde_floor(o.path.schedule))
        expected = math.sqrt(v / (v + s * s))
        # sampling error of a std: std / sqrt(2n) -> 5 of them (relative 0.025); the 20-step
        # solver's own error on one Gaussian is far below (order 4)
        assert abs(float(out.x.std()) / math.sqrt(v) - expected) < 5 / math.sqrt(2 * n)
    assert abs(sigma_min_rule(20) - 0.02) < 1e-12  # the value the docstring derives


def test_default_grid_scales_with_sigma_data():
    """sigma_tilde = sigma / alpha on the default grid: the jump target sigma_max is
    SIGMA_MAX_RATIO sigma_data sqrt(max(dim, 0.4 steps)), the last network level sigma_min
    proportional to sigma_data (both far from the VP path's limits, sigma_tilde 0.0105 ..
    152)."""
    from probpath.paths import AffinePath
    from probpath.sampling.samplers import (
        SIGMA_MAX_RATIO,
        default_grid,
        sigma_max_rule,
        sigma_min_rule,
    )

    path = AffinePath("vp")
    # 10 steps: the dimension counts as at least 0.4 * 10 = 4, so dim 1 -> sqrt(4) = 2
    for sd, dim, root in ((0.5, 1, 2.0), (4.0, 1, 2.0), (0.5, 16, 4.0)):
        assert math.isclose(sigma_max_rule(10, sd, dim), SIGMA_MAX_RATIO * sd * root)
        ts = default_grid(path, 10, get_sampler("unipc"), sigma_data=sd, dim=dim)
        v = path(ts[1:-1])
        st = (v.sigma / v.alpha).tolist()
        # round trip t -> log-SNR -> t of the schedule's inverse: relative error ~1e-10
        assert math.isclose(st[0], SIGMA_MAX_RATIO * sd * root, rel_tol=1e-8)
        assert math.isclose(st[-1], sigma_min_rule(10, sd), rel_tol=1e-8)
    # 5 steps (0.4 * 5 = 2) leave 2-D data at sqrt(2); 20 steps (8) raise it to sqrt(8)
    assert math.isclose(sigma_max_rule(5, 1.0, 2), SIGMA_MAX_RATIO * math.sqrt(2.0))
    assert math.isclose(sigma_max_rule(20, 1.0, 2), SIGMA_MAX_RATIO * math.sqrt(8.0))
    with pytest.raises(ValueError, match="sigma_data"):
        default_grid(path, 10, get_sampler("unipc"), sigma_data=0.0)
    with pytest.raises(TypeError, match="sigma_data"):
        default_grid(path, 10, get_sampler("unipc"), sigma_data="1")
