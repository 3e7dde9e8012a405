"""The two-sample noise floor of a metric: its value between two independent true samples."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["noise_floor"]


def noise_floor(
    sampler: Callable[[int, torch.Generator | None], torch.Tensor],
    n: int,
    metric: Callable[[torch.Tensor, torch.Tensor], float],
    *,
    repeats: int = 1,
    generator: torch.Generator | None = None,
) -> float:
    """Mean of ``metric(a, b)`` over ``repeats`` pairs of independent size-``n`` draws.

    A model's sample cannot be told from the data better than another draw of the data,
    so a benchmark reports its metric next to this floor (same ``n``, same metric).

    Args:
        sampler: ``sampler(n, generator) -> (n, *event)`` draws from the true distribution.
        n: sample size of each draw (use the size the models are evaluated with).
        metric: ``metric(a, b) -> float``, e.g. ``probpath.metrics.mmd``.
        repeats: number of independent pairs averaged.
        generator: random source passed to ``sampler``.

    Returns:
        A Python float.

    Example:
        >>> from probpath.data import make_toy
        >>> from probpath.metrics import energy_distance
        >>> draw = lambda n, g: make_toy("moons", n, generator=g)
        >>> floor = noise_floor(draw, 500, energy_distance, generator=torch.Generator())
    """
    for name, v in (("n", n), ("repeats", repeats)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    values = [float(metric(sampler(n, generator), sampler(n, generator))) for _ in range(repeats)]
    return sum(values) / repeats
