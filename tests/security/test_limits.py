"""``build_bounded`` counts factory allocations exactly as torch creates them."""

from __future__ import annotations

import pytest
import torch

from probpath.core.limits import ResourceLimitError, _numel, build_bounded

CALLS = [
    (torch.empty, (2, 3), {}),
    (torch.zeros, ((4, 5),), {}),
    (torch.ones, (), {"size": (3,)}),
    (torch.randn, (7,), {}),
    (torch.full, ((2, 2), 1.5), {}),
    (torch.linspace, (0.0, 1.0, 11), {}),
    (torch.linspace, (0.0, 1.0), {"steps": 4}),
    (torch.arange, (10,), {}),
    (torch.arange, (2, 11, 3), {}),
    (torch.arange, (0.0, 1.0, 0.3), {}),
    (torch.arange, (5, 2, -1), {}),
]


@pytest.mark.parametrize("func, args, kwargs", CALLS)
def test_numel_from_arguments_matches_torch(func, args, kwargs):
    """The argument-based count equals the number of elements torch actually creates."""
    assert _numel(func.__name__, args, kwargs) == func(*args, **kwargs).numel()


def test_budget_refuses_before_the_allocation_and_counts_the_total():
    """Three 40-element tensors fit in 120 elements; a fourth passes the bound of 150."""
    assert build_bounded(lambda: [torch.zeros(40) for _ in range(3)], 150, "x")[0].numel() == 40
    with pytest.raises(ResourceLimitError, match="more than 150"):
        build_bounded(lambda: [torch.zeros(40) for _ in range(4)], 150, "x")
