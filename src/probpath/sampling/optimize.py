"""Time grids fitted to a model: :func:`optimize_grid` (in the spirit of Align Your Steps).

For a given field, sampler and number of steps, choose the interior times of the grid that
minimise the discretisation error: the distance between the sampler's output and a fine
solve of the same probability-flow ODE from the same ``n`` prior draws (Sabour et al. 2024
minimise a KL upper bound over the data; with a deterministic solver the end-point error
from shared starts is the direct target and needs no data). The first time ``t_max`` and the
last (``t = 0``, or the path's ``t_min`` where ``sigma(0) > 0``) stay fixed; ``fixed_above``
also keeps the start's times at noise levels ``sigma_tilde = sigma / alpha >= fixed_above *
sigma_data``, where the draws choose their modes (off by default: on tuning problems, fitting
those times too cut the RMS error at 5 / 10 / 20 steps to 0.89 / 0.68 / 0.39x the default
grid's, geometric mean, against 0.97 / 0.80 / 0.90x with them fixed; benchmarks/README.md).
The remaining increments are a softmax of logits ``z0 + cumsum(e)``, ``|e_i| <= RATIO`` (the
ratio of neighbouring steps moves by at most ``e^RATIO`` from the start's), optimised by
Powell's method (derivative-free; every evaluation is one run of the sampler: ``steps`` NFE on
the ``n`` fit draws). The defaults (``FIT_DRAWS`` fit draws, ``EVALS_PER_STEP`` trial runs per
step, the RMS objective, ``RATIO`` 0.5, no fixed head) were chosen on tuning problems of
benchmarks/bench_samplers.py (seeds 24-36) against the earlier 128 / 6 / tail / 0.25 / 1.

**The check.** A coarser step where the draws choose their modes sends a rare draw to
another mode: one in a few hundred, which moves the RMS over a few dozen draws 10-100x
(benchmarks/README.md, seeds 5, 9 and 15 of bench_samplers). A fit on a few hundred draws
cannot see such switches, and neither can a check on as many. So the result is checked on
``n_check`` *other* draws (default 1024: a check is one run of the sampler per grid, not a
fit), and kept only if there its RMS error is lower than the start's **and** its number of
far draws (:func:`far_draws`: error above ``switch_distance``, by default a quarter of the
data's radius ``sigma_data sqrt(d)``, the scale of a switch between modes) does not grow.
Otherwise the starting grid is returned.

The objective (:data:`OBJECTIVES`) is a function of the per-draw errors ``e_i``: ``"rms"``
(their root mean square, the default), ``"tail"`` (the RMS of the largest tenth) or ``"max"``.

The fine solve is DPM-Solver++(3M) on a 200-step log-SNR grid with the second-order final
step (``final_extrapolate``): third order, its error is orders of magnitude below that of a
5-20 step grid.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch

from probpath.core.validation import check_positive_int
from probpath.paths.field import Field, count_nfe
from probpath.sampling.loop import run_sampler
from probpath.sampling.samplers import check_sigma_data, get_sampler
from probpath.sampling.timesteps import check_grid, make_grid

__all__ = [
    "OBJECTIVES",
    "OptimizedGrid",
    "optimize_grid",
    "far_draws",
    "accept_fit",
    "load_grid",
    "save_grid",
    "GRIDS_FILE",
    "FIT_DRAWS",
    "CHECK_DRAWS",
    "EVALS_PER_STEP",
]

FINE_STEPS = 200
RATIO = 0.5
#: default prior draws the grid is fitted on, draws it is checked on, trial runs per step
FIT_DRAWS, CHECK_DRAWS, EVALS_PER_STEP = 512, 1024, 20
#: default ``switch_distance`` as a fraction of the data's radius ``sigma_data * sqrt(d)``
FAR = 0.25


def _rms(e: torch.Tensor) -> float:
    return float(e.pow(2).mean().sqrt())


def _tail(e: torch.Tensor) -> float:
    k = max(1, math.ceil(0.1 * e.numel()))
    return float(e.pow(2).topk(k).values.mean().sqrt())


def _max(e: torch.Tensor) -> float:
    return float(e.max())


#: objectives of the per-draw end-point errors ``e_i`` ``(n,)``: their RMS, the RMS of the
#: largest tenth (at least one draw), their maximum
OBJECTIVES = MappingProxyType({"rms": _rms, "tail": _tail, "max": _max})


def far_draws(errors: torch.Tensor, distance: float) -> int:
    """How many per-draw end-point errors exceed ``distance`` (draws that ended far from their
    reference: with ``distance`` of the order of the gap between modes, mode switches)."""
    return int((errors > distance).sum())


def accept_fit(
    start_errors: torch.Tensor | None, fit_errors: torch.Tensor | None, distance: float
) -> bool:
    """The check of :func:`optimize_grid` on per-draw errors of the check draws (``None``: the
    run failed): keep the fit only if its RMS is lower than the start's and it has no more far
    draws (:func:`far_draws`) than the start. A failed start accepts any finite fit."""
    if fit_errors is None:
        return False
    if start_errors is None:
        return True
    return _rms(fit_errors) < _rms(start_errors) and far_draws(fit_errors, distance) <= far_draws(
        start_errors, distance
    )


@dataclass(frozen=True)
class OptimizedGrid:
    """The fitted grid and what it cost.

    Attributes:
        ts: the grid, ``steps + 1`` decreasing float64 times.
        sampler, steps, options: what it was fitted for.
        error: RMS error of the returned grid against the fine solve on the check draws
            (the fit is kept only if it beats the starting grid there in RMS with no more far
            draws, :func:`accept_fit`; otherwise the starting grid is returned).
        initial_error: the same for the starting grid.
        far: far draws (:func:`far_draws`) of the returned grid among the check draws.
        initial_far: the same for the starting grid.
        nfe: network evaluations spent (the fine solve of the fit draws and of the check
            draws, every trial run on the fit draws, two check runs), counted per batch.
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
    far: int = 0
    initial_far: int = 0

    def to_json(self) -> dict:
        """A JSON-able record (the run's ``grids.json`` entry)."""
        return {
            "ts": self.ts.tolist(),
            "sampler": self.sampler,
            "steps": self.steps,
            "options": self.options,
            "error": self.error,
            "initial_error": self.initial_error,
            "far": self.far,
            "initial_far": self.initial_far,
            "nfe": self.nfe,
            "seconds": self.seconds,
        }


def _n_fixed(path, ts: torch.Tensor, fixed_above: float | None, sigma_data) -> int:
    """How many leading times of ``ts`` stay fixed: ``t_max`` and those at ``sigma_tilde >=
    fixed_above * sigma_data``."""
    if fixed_above is None:
        return 1
    v = path(ts[:-1])
    st = v.sigma / v.alpha.clamp_min(1e-300)  # alpha = 0 (flow t = 1): infinite noise
    above = int((st >= fixed_above * check_sigma_data(sigma_data)).sum())
    return max(1, above)


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
    n: int = FIT_DRAWS,
    n_check: int = CHECK_DRAWS,
    switch_distance: float | None = None,
    init: torch.Tensor | None = None,
    max_evals: int | None = None,
    generator: torch.Generator | None = None,
    cond=None,
    dtype: torch.dtype = torch.float64,
    sigma_data: float | None = None,
    objective: str = "rms",
    fixed_above: float | None = None,
    **options,
) -> OptimizedGrid:
    """Fit the ``steps``-step grid of a deterministic ``sampler`` to ``field_``.

    Args:
        field_: the model's :class:`~probpath.paths.field.Field`.
        steps: number of steps (NFE for one-evaluation samplers).
        event_shape: shape of one sample.
        sampler: a deterministic sampler of the registry.
        n: prior draws the grid is fitted on.
        n_check: other prior draws the fit is checked on (:func:`accept_fit`).
        switch_distance: a check draw whose error exceeds it counts as far (a mode switch);
            default ``FAR * sigma_data * sqrt(d)`` (``sigma_data`` 1 when ``None``).
        init: starting grid (default: :func:`~probpath.sampling.samplers.sample_path`'s
            default grid for ``sampler``, scaled by ``sigma_data``).
        max_evals: trial runs allowed (default ``EVALS_PER_STEP * steps``).
        generator: for the prior draws.
        cond: conditioning passed to the field (a tensor: one row per draw, the ``n`` fit
            draws first, then the ``n_check`` check draws).
        dtype: of the draws (float64: round-off far below the errors being minimised).
        sigma_data: the data's standard deviation for the default ``init`` and
            ``switch_distance`` (``None``: 1).
        objective: a key of :data:`OBJECTIVES`, applied to the per-draw errors of the fit draws.
        fixed_above: keep the start's times at ``sigma_tilde >= fixed_above * sigma_data``
            (``None``, the default: only ``t_max``); at least two steps must stay free, else
            the start is returned as it is.
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
    n_check = check_positive_int(n_check, "n_check")
    if steps < 2:
        raise ValueError("steps must be >= 2: a 1-step grid has no interior time to fit")
    if objective not in OBJECTIVES:
        raise ValueError(
            f"objective must be one of {', '.join(map(repr, OBJECTIVES))}; got {objective!r}"
        )
    score = OBJECTIVES[objective]
    if fixed_above is not None and (
        isinstance(fixed_above, bool)
        or not isinstance(fixed_above, int | float)
        or not fixed_above > 0
    ):
        raise ValueError(
            f"fixed_above must be a positive multiple of sigma_data or None, got {fixed_above!r}"
        )
    dim = math.prod(event_shape)
    if switch_distance is None:
        switch_distance = FAR * check_sigma_data(sigma_data) * math.sqrt(dim)
    elif isinstance(switch_distance, bool) or not (
        isinstance(switch_distance, int | float) and switch_distance > 0
    ):
        raise ValueError(f"switch_distance must be a positive number, got {switch_distance!r}")
    start = time.perf_counter()
    path = field_.path
    if init is None:
        ts0 = default_grid(path, steps, spec, sigma_data=sigma_data, dim=dim)
    else:
        ts0 = check_grid(init, "init")
    if len(ts0) != steps + 1:
        raise ValueError(f"init must have steps + 1 = {steps + 1} times, got {len(ts0)}")
    counted = count_nfe(field_)
    fine = make_grid(path, FINE_STEPS, "log_snr", t_max=float(ts0[0]))
    draws = {}  # "fit" / "check": (draws, their conditioning, their fine solve)
    for name, part in (("fit", slice(0, n)), ("check", slice(n, n + n_check))):
        # drawn one after the other: the fit draws do not depend on n_check
        shape = (part.stop - part.start, *event_shape)
        x = path.prior_sample(shape, generator=generator, dtype=dtype)
        c = cond[part] if isinstance(cond, torch.Tensor) else cond
        ref = run_sampler(get_sampler("dpmpp_3m"), counted, x, fine, cond=c, final_extrapolate=True)
        draws[name] = (x, c, ref)
    head = ts0[: _n_fixed(path, ts0, fixed_above, sigma_data)]  # times kept as they are
    t_max, t_end = float(head[-1]), float(ts0[-1])

    def draw_errors(ts: torch.Tensor, part: str) -> torch.Tensor | None:
        if not bool((ts[1:] < ts[:-1]).all()):  # steps below float64 resolution
            return None
        x, c, ref = draws[part]
        out = run_sampler(spec, counted, x, ts, cond=c, **options)
        e = (out - ref).flatten(1).pow(2).sum(1).sqrt()
        return e if bool(torch.isfinite(e).all()) else None

    def error(ts: torch.Tensor) -> float:
        e = draw_errors(ts, "fit")
        return 1e30 if e is None else score(e)

    def full(z: np.ndarray) -> torch.Tensor:
        return torch.cat([head[:-1], _grid(z, t_max, t_end)])

    z0 = np.log(np.maximum(-np.diff(ts0[len(head) - 1 :].numpy()), 1e-12))

    # log step sizes z0 + cumsum(e), |e_i| <= RATIO: the ratio of neighbouring steps moves by at
    # most e^RATIO from the start's; multistep solvers turn uneven neighbouring steps into large
    # extrapolation weights that throw rare trajectories off (benchmarks/README.md)
    def logits(e: np.ndarray) -> np.ndarray:
        return z0 + np.cumsum(e)

    ts = ts0
    if len(z0) >= 2:  # at least two free increments (one is fixed by its ends)
        res = minimize(
            lambda e: error(full(logits(e))),
            np.zeros_like(z0),
            method="Powell",
            bounds=[(-RATIO, RATIO)] * len(z0),
            options={"maxfev": max_evals or EVALS_PER_STEP * steps, "xtol": 1e-3, "ftol": 1e-4},
        )
        ts = full(logits(res.x))
    # accept the fit only if, on many draws it was not fitted on, it beats the start in RMS
    # with no more far draws (rare mode switches the fit draws did not show)
    c0, c1 = draw_errors(ts0, "check"), draw_errors(ts, "check")
    e0 = _rms(c0) if c0 is not None else math.inf
    f0 = far_draws(c0, switch_distance) if c0 is not None else n_check  # failed: all far
    keep = accept_fit(c0, c1, switch_distance)
    if not keep:
        ts = ts0
    return OptimizedGrid(
        ts=ts,
        sampler=sampler,
        steps=steps,
        error=_rms(c1) if keep else e0,
        initial_error=e0,
        nfe=counted.nfe,
        seconds=time.perf_counter() - start,
        options=dict(options),
        far=far_draws(c1, switch_distance) if keep else f0,
        initial_far=f0,
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
