"""``PathModel`` records the data's standard deviation while it trains (``sigma_data``), saves
it with the weights, and flow matching's default grid is scaled by it."""

from __future__ import annotations

import math

import torch

from probpath.sampling import get_sampler
from probpath.sampling.samplers import default_grid
from probpath.velocity import FlowMatching


def _model():
    return FlowMatching((3,), network={"hidden": [8]})


def test_sigma_data_is_the_pooled_std_of_the_training_batches(tmp_path):
    m = _model()
    assert m.data_std is None  # nothing seen yet
    g = torch.Generator().manual_seed(0)
    batches = [3.0 + 2.0 * torch.randn(16, 3, generator=g) for _ in range(5)]
    m.train()
    for xb in batches:
        m.loss(xb)
    allx = torch.cat(batches).double()
    expected = float(allx.flatten().std(unbiased=False))  # all values pooled, population std
    # running float32 means over 240 values: relative round-off ~1e-6
    assert math.isclose(m.data_std, expected, rel_tol=1e-5)
    # evaluation-mode calls (sampling, scores, a validation loss) do not count as data
    m.eval()
    m.loss(torch.zeros(4, 3))
    m.velocity(torch.zeros(4, 3), 0.5)
    assert math.isclose(m.data_std, expected, rel_tol=1e-5)
    # saved with the weights
    m.save(tmp_path / "run")
    from probpath import load

    back = load(tmp_path / "run")
    assert back.data_std == m.data_std


def test_flow_matching_default_grid_uses_sigma_data():
    m = _model()
    m.train()
    m.loss(5.0 * torch.randn(64, 3, generator=torch.Generator().manual_seed(1)))
    spec = get_sampler(m.default_sampler)
    if spec.spacing != "log_snr":  # the rule applies to the exponential integrators
        spec = get_sampler("unipc")
    grid = m.grid_defaults(spec.name, 10)["grid"]
    t_max = 1.0 - 1e-3 if spec.needs_alpha else 1.0
    expected = default_grid(m.path, 10, spec, t_max=t_max, sigma_data=m.data_std, dim=m.dim)
    torch.testing.assert_close(grid, expected, rtol=0, atol=0)
    assert not torch.equal(grid, default_grid(m.path, 10, spec, t_max=t_max))


def test_diffusion_and_score_models_use_the_data_range_once_fitted():
    """Diffusion and score models hand the deterministic log-SNR samplers the data-derived
    range (``default_grid`` with their recorded ``data_std``) once they have seen data; before
    that, and for every other sampler or a path with ``sigma(0) > 0`` (VE), the whole range
    as before. Checked exactly against ``default_grid`` (same function, same inputs: equal to
    the last bit)."""
    from probpath.score import DiffusionModel, ScoreSDE

    data = 4.0 * torch.randn(64, 3, generator=torch.Generator().manual_seed(2))
    for m in (
        DiffusionModel((3,), network={"hidden": [8]}),
        ScoreSDE((3,), sde="vp", network={"hidden": [8]}),
    ):
        before = m.grid_defaults("unipc", 10)
        assert not isinstance(before.get("grid"), torch.Tensor)  # whole range, as before
        m.train()
        m.loss(data)
        grid = m.grid_defaults("unipc", 10)["grid"]
        spec = get_sampler("unipc")
        expected = default_grid(m.path, 10, spec, sigma_data=m.data_std, dim=m.dim)
        torch.testing.assert_close(grid, expected, rtol=0, atol=0)
        # the stochastic samplers keep their own grids
        assert not isinstance(m.grid_defaults("ancestral", 10).get("grid"), torch.Tensor)
        # sampling with it spends exactly `steps` evaluations and stays finite
        out = m.sample(8, sampler="unipc", steps=10, generator=torch.Generator().manual_seed(0))
        assert out.shape == (8, 3) and bool(torch.isfinite(out).all())
    ve = ScoreSDE((3,), sde="ve", network={"hidden": [8]})
    ve.train()
    ve.loss(data)
    # sigma(0) > 0: the rule does not apply; the grid ends at t = 0 (sigma_min) as before
    assert not isinstance(ve.grid_defaults("unipc", 10).get("grid"), torch.Tensor)
