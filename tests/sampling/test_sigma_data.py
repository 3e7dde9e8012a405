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
