"""Time grids fitted to a model: :func:`optimize_grid` (in the spirit of Align Your Steps).

For a given field, sampler and number of steps, choose the interior times of the grid that
minimise the discretisation error: the RMS distance between the sampler's output and a fine
solve of the same probability-flow ODE from the same ``n`` prior draws (Sabour et al. 2024
minimise a KL upper bound over the data; with a deterministic solver the end-point error
from shared starts is the direct target and needs no data). The first time ``t_max`` and the
last (``t = 0``, or the path's ``t_min`` where ``sigma(0) > 0``) stay fixed; the ``steps``
increments are a softmax of logits ``z0 + cumsum(e)``, ``|e_i| <= RATIO`` (the ratio of
neighbouring steps moves by at most ``e^RATIO`` from the start's), optimised by Powell's method
(derivative-free; every evaluation is one run of the sampler: ``steps`` NFE on half the
``n`` draws; the other half checks the result, so a grid that only fits its own draws is not
returned).

The fine solve is DPM-Solver++(3M) on a 200-step log-SNR grid with the second-order final
step (``final_extrapolate``): third order, its error is orders of magnitude below that of a
5-20 step grid.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from probpath.core.validation import check_positive_int
from probpath.paths.field import Field, count_nfe
from probpath.sampling.loop import run_sampler
from probpath.sampling.samplers import get_sampler
from probpath.sampling.timesteps import check_grid, make_grid

__all__ = ["OptimizedGrid", "optimize_grid", "load_grid", "save_grid", "GRIDS_FILE"]

FINE_STEPS = 200
RATIO = 0.25


@dataclass(frozen=True)
class OptimizedGrid:
    """The fitted grid and what it cost.

    Attributes:
        ts: the grid, ``steps + 1`` decreasing float64 times.
        sampler, steps, options: what it was fitted for.
        error: RMS error of the returned grid against the fine solve, on the half of the
            draws the fit did not use (the fit is fitted on the other half and kept only if
            it beats the starting grid there; otherwise the starting grid is returned).
        initial_error: the same for the starting grid.
        nfe: network evaluations spent (fine solve + every trial run), per draw.
        seconds: wall-clock time of the fit.
    """

    ts: torch.Tensor
    sampler: str
    steps: int
    error: float
    initial_error: float
    nfe: int
    seconds: float
    options: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """A JSON-able record (the run's ``grids.json`` entry)."""
        return {
            "ts": self.ts.tolist(),
            "sampler": self.sampler,
            "steps": self.steps,
            "options": self.options,
            "error": self.error,
            "initial_error": self.initial_error,
            "nfe": self.nfe,
            "seconds": self.seconds,
        }


def _grid(z: np.ndarray, t_max: float, t_end: float) -> torch.Tensor:
    w = np.exp(np.clip(z - z.max(), -20.0, 0.0))  # every step > 0 (e^-20 of the largest)
    inc = (t_max - t_end) * w / w.sum()
    ts = t_max - np.concatenate([[0.0], np.cumsum(inc)])
    ts[-1] = t_end
    return torch.from_numpy(ts)


@torch.no_grad()
def optimize_grid(
    field_: Field,
    steps: int,
    event_shape: tuple[int, ...],
    *,
    sampler: str = "unipc",
    n: int = 256,
    init: torch.Tensor | None = None,
    max_evals: int | None = None,
    generator: torch.Generator | None = None,
    cond=None,
    dtype: torch.dtype = torch.float64,
    sigma_data: float | None = None,
    **options,
) -> OptimizedGrid:
    """Fit the ``steps``-step grid of a deterministic ``sampler`` to ``field_``.

    Args:
        field_: the model's :class:`~probpath.paths.field.Field`.
        steps: number of steps (NFE for one-evaluation samplers).
        event_shape: shape of one sample.
        sampler: a deterministic sampler of the registry.
        n: prior draws: half fit the grid, half check it (``n >= 2``).
        init: starting grid (default: :func:`~probpath.sampling.samplers.sample_path`'s
            default grid for ``sampler``, scaled by ``sigma_data``).
        max_evals: trial runs allowed (default ``40 * steps``).
        generator: for the prior draws.
        cond: conditioning passed to the field.
        dtype: of the draws (float64: round-off far below the errors being minimised).
        sigma_data: the data's standard deviation for the default ``init`` (``None``: 1).
        **options: the sampler's options.

    Returns:
        :class:`OptimizedGrid` (the grid, its error before / after, the cost).
    """
    from scipy.optimize import minimize

    from probpath.sampling.samplers import default_grid

    spec = get_sampler(sampler)
    if not spec.deterministic or spec.fixed_steps is not None:
        raise ValueError(
            f"optimize_grid needs a deterministic fixed-step sampler, got {sampler!r}; use "
            "e.g. 'unipc', 'dpmpp_2m', 'dpmpp_3m', 'deis' or 'heun'"
        )
    steps = check_positive_int(steps, "steps")
    n = check_positive_int(n, "n")
    if n < 2:
        raise ValueError(f"n must be >= 2 (half the draws fit the grid, half check it), got {n}")
    if steps < 2:
        raise ValueError("steps must be >= 2: a 1-step grid has no interior time to fit")
    start = time.perf_counter()
    path = field_.path
    if init is None:
        dim = math.prod(event_shape)
        ts0 = default_grid(path, steps, spec, sigma_data=sigma_data, dim=dim)
    else:
        ts0 = check_grid(init, "init")
    if len(ts0) != steps + 1:
        raise ValueError(f"init must have steps + 1 = {steps + 1} times, got {len(ts0)}")
    counted = count_nfe(field_)
    x = path.prior_sample((n, *event_shape), generator=generator, dtype=dtype)
    fine = make_grid(path, FINE_STEPS, "log_snr", t_max=float(ts0[0]))
    ref = run_sampler(get_sampler("dpmpp_3m"), counted, x, fine, cond=cond, final_extrapolate=True)
    t_max, t_end = float(ts0[0]), float(ts0[-1])

    fit, check = slice(0, (n + 1) // 2), slice((n + 1) // 2, n)

    def error(ts: torch.Tensor, part: slice = fit) -> float:
        if not bool((ts[1:] < ts[:-1]).all()):  # steps below float64 resolution
            return 1e30
        c = cond[part] if isinstance(cond, torch.Tensor) else cond
        out = run_sampler(spec, counted, x[part], ts, cond=c, **options)
        e = float((out - ref[part]).flatten(1).pow(2).sum(1).mean().sqrt())
        return e if math.isfinite(e) else 1e30

    z0 = np.log(np.maximum(-np.diff(ts0.numpy()), 1e-12))

    # log step sizes z0 + cumsum(e), |e_i| <= RATIO: the ratio of neighbouring steps moves by at
    # most e^RATIO from the start's; multistep solvers turn uneven neighbouring steps into large
    # extrapolation weights that throw rare trajectories off (benchmarks/README.md)
    def logits(e: np.ndarray) -> np.ndarray:
        return z0 + np.cumsum(e)

    res = minimize(
        lambda e: error(_grid(logits(e), t_max, t_end)),
        np.zeros_like(z0),
        method="Powell",
        bounds=[(-RATIO, RATIO)] * len(z0),
        options={"maxfev": max_evals or 40 * steps, "xtol": 1e-3, "ftol": 1e-4},
    )
    ts = _grid(logits(res.x), t_max, t_end)
    # accept the fit only if it also beats the start on the draws it was not fitted on
    e0, e1 = error(ts0, check), error(ts, check)
    if not e1 < e0:
        ts, e1 = ts0, e0
    return OptimizedGrid(
        ts=ts,
        sampler=sampler,
        steps=steps,
        error=e1,
        initial_error=e0,
        nfe=counted.nfe,
        seconds=time.perf_counter() - start,
        options=dict(options),
    )


GRIDS_FILE = "grids.json"


def _key(sampler: str, steps: int) -> str:
    return f"{sampler}:{steps}"


def load_grid(run_dir, sampler: str, steps: int) -> torch.Tensor | None:
    """The grid saved in ``run_dir/grids.json`` for ``sampler`` and ``steps`` (or ``None``)."""
    from pathlib import Path

    from probpath.core.serialization import read_json

    file = Path(run_dir) / GRIDS_FILE
    if not file.exists():
        return None
    entry = read_json(file).get(_key(sampler, steps))
    return None if entry is None else check_grid(entry["ts"], f"{GRIDS_FILE} grid")


def save_grid(run_dir, result: OptimizedGrid) -> None:
    """Add ``result`` to ``run_dir/grids.json`` (JSON, written atomically)."""
    from pathlib import Path

    from probpath.core.serialization import atomic_write_json, read_json

    file = Path(run_dir) / GRIDS_FILE
    grids = read_json(file) if file.exists() else {}
    grids[_key(result.sampler, result.steps)] = result.to_json()
    atomic_write_json(file, grids)
