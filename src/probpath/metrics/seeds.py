"""A metric over training seeds: mean ± standard deviation, the form every table row takes
(``compare --seeds 0,1,2``, ``bench_quality.py --seeds 0,1,2``).

One training run is one draw of a random quantity (initialisation, batches, sampling noise);
a row is reproducible only as a mean with its spread over at least three seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["MIN_SEEDS", "SeedSummary", "parse_seeds", "summarise", "summarise_runs"]

#: The fewest seeds a reported row may have (a spread needs at least two; the protocol
#: asks for three).
MIN_SEEDS = 3


@dataclass(frozen=True)
class SeedSummary:
    """A metric over seeds.

    Attributes:
        mean: the mean over the finite values.
        sd: the sample standard deviation (n - 1 in the denominator; ``nan`` for one value).
        n: how many finite values.
        values: every value, in seed order (``nan`` kept).
    """

    mean: float
    sd: float
    n: int
    values: tuple[float, ...]

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.sd:.2g}" if self.n > 1 else f"{self.mean:.4g}"

    @property
    def spread_ratio(self) -> float:
        """max / min of the values (the "swing" between seeds); ``nan`` if any is <= 0."""
        finite = [v for v in self.values if math.isfinite(v)]
        if not finite or min(finite) <= 0:
            return float("nan")
        return max(finite) / min(finite)


def summarise(values: Iterable[float | None]) -> SeedSummary:
    """Mean and sample standard deviation of ``values`` (``None`` / non-finite left out of
    both, but kept in ``values``).

    Example:
        >>> str(summarise([1.0, 2.0, 3.0]))
        '2 ± 1'
    """
    vals = tuple(float("nan") if v is None else float(v) for v in values)
    finite = [v for v in vals if math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return SeedSummary(float("nan"), float("nan"), 0, vals)
    mean = math.fsum(finite) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else math.nan
    return SeedSummary(mean, sd, n, vals)


def summarise_runs(
    runs: Sequence[Mapping[str, float | None]], names: Iterable[str] | None = None
) -> dict[str, SeedSummary]:
    """Per metric, the summary over runs (one ``{metric: value}`` mapping per seed).

    Args:
        runs: the per-seed results.
        names: the metrics to summarise (default: the first run's keys).
    """
    if not runs:
        raise ValueError("runs is empty; pass one {metric: value} mapping per seed")
    keys = list(runs[0]) if names is None else list(names)
    return {k: summarise(r.get(k) for r in runs) for k in keys}


def parse_seeds(text: str | Sequence[int], *, minimum: int = 1) -> list[int]:
    """``"0,1,2"`` (or a list) as distinct non-negative seeds.

    Raises:
        ValueError: not integers, negative, repeated, or fewer than ``minimum``.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        seeds = [int(str(s).strip()) for s in items if str(s).strip()]
    except ValueError:
        raise ValueError(
            f"seeds must be comma-separated integers such as 0,1,2, got {text!r}"
        ) from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, got {text!r}")
    if len(seeds) < minimum:
        raise ValueError(f"give at least {minimum} seeds (e.g. 0,1,2), got {text!r}")
    return seeds
