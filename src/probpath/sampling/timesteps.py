"""Time grids for the samplers, descending from noise (``t_max``) to data.

A grid of ``steps`` steps is ``steps + 1`` decreasing times. The network sees the first
``steps`` of them, all with ``sigma > 0``. With ``final_zero=True`` (default) the last point is
``t = 0`` and the last step goes **to sigma = 0 explicitly**: every sampler then takes the
first-order denoising step ``x = alpha(0) * x0_hat(x, t_last)`` (one NFE, no noise added),
because the ODE/SDE coefficients (``sigma'``, ``log-SNR``) are singular at ``sigma = 0``.
On schedules with ``sigma(0) > 0`` (VE, linear with ``sigma_min``) ``t_min`` defaults to 0 and
the grid simply ends at ``t = 0`` (``sigma_min``); a final denoising there is the caller's
choice (``field.x0_eps`` once more).

Kinds (``spacing=``):

* ``"uniform"``   uniform in ``t`` (Song et al. 2021);
* ``"log_snr"``   uniform in ``lambda = log(alpha^2 / sigma^2)`` (DPM-Solver's ``logSNR``);
* ``"edm"``       Karras et al. (2022): ``sigma_tilde_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho)
                  - s_max^(1/rho)))^rho`` in ``sigma_tilde = sigma / alpha`` (default ``rho = 7``);
* ``"quadratic"`` ``t_i`` quadratic in ``i`` (DDIM's quadratic spacing);
* a user tensor / list of decreasing times (:func:`check_grid` validates it).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from probpath.core.validation import check_positive_int
from probpath.paths.schedules import ScheduleValues

__all__ = ["SPACINGS", "make_grid", "check_grid", "GridValues"]

SPACINGS = ("uniform", "log_snr", "edm", "quadratic")


def _sigma_tilde_to_t(path, st: torch.Tensor) -> torch.Tensor:
    return path.t_from_log_snr(-2.0 * torch.log(st))


def make_grid(
    path,
    steps: int,
    spacing: str = "log_snr",
    *,
    t_max: float | None = None,
    t_min: float | None = None,
    final_zero: bool = True,
    rho: float = 7.0,
    sigma_max: float | None = None,
    sigma_min: float | None = None,
) -> torch.Tensor:
    """A decreasing float64 grid of ``steps + 1`` times for ``path``.

    Args:
        path: an :class:`~probpath.paths.affine.AffinePath`.
        steps: number of steps (``>= 1``).
        spacing: ``"uniform"``, ``"log_snr"``, ``"edm"`` or ``"quadratic"``.
        t_max: first time (default ``path.t_max``).
        t_min: last time the network sees (default ``path.t_min``).
        final_zero: end with ``t = 0`` (the explicit final step to sigma = 0, see module doc).
        rho: EDM's exponent.
        sigma_max: optional, in ``sigma_tilde = sigma / alpha`` units: space the grid from this
            noise level down, after one first step from ``t_max`` straight to it. Above a few
            data standard deviations ``x0_hat`` barely changes, so the exponential integrators
            (DPM-Solver) cross that range exactly in one step and the saved steps go where
            the trajectories bend.
        sigma_min: optional, ``sigma_tilde`` of the last network time (replaces ``t_min``).

    >>> from probpath.paths import AffinePath
    >>> make_grid(AffinePath("linear"), 4, "uniform", t_min=0.25).tolist()
    [1.0, 0.75, 0.5, 0.25, 0.0]
    """
    steps = check_positive_int(steps, "steps")
    for name, value in (("sigma_max", sigma_max), ("sigma_min", sigma_min)):
        if value is not None and not float(value) > 0:
            raise ValueError(f"{name} must be a positive noise level sigma / alpha, got {value}")
    key = (steps, spacing, t_max, t_min, final_zero, float(rho), sigma_max, sigma_min)
    return torch.tensor(_cached_grid(path.schedule, *key), dtype=torch.float64)


@functools.lru_cache(maxsize=128)
def _cached_grid(schedule, *key) -> tuple[float, ...]:
    """Grids are pure functions of their arguments: computed once, then reused."""
    return tuple(_make_grid(schedule, *key).tolist())


def _t_of_sigma_tilde(schedule, st: float) -> float:
    return float(schedule.t_from_log_snr(torch.tensor(-2.0 * math.log(st), dtype=torch.float64)))


def _make_grid(
    schedule, steps, spacing, t_max, t_min, final_zero, rho, sigma_max, sigma_min
) -> torch.Tensor:
    if spacing not in SPACINGS:
        raise ValueError(
            f"spacing must be one of {', '.join(map(repr, SPACINGS))}; got {spacing!r}"
        )
    t_max = float(schedule.t_max if t_max is None else t_max)
    t_min = float(schedule.t_min if t_min is None else t_min)
    if sigma_min is not None:
        t_min = _t_of_sigma_tilde(schedule, sigma_min)
    if not 0.0 <= t_min < t_max:
        raise ValueError(f"need 0 <= t_min < t_max, got t_min={t_min}, t_max={t_max}")
    if final_zero and t_min == 0.0:
        final_zero = False  # sigma(0) > 0 (VE): the grid ends at t = 0 itself
    n = steps if final_zero else steps + 1  # points visited by the network (plus t = 0)
    start = t_max
    if n > 2 and sigma_max is not None:
        start = min(t_max, _t_of_sigma_tilde(schedule, sigma_max))
    elif n > 2 and spacing in ("log_snr", "edm"):
        if float(schedule.log_snr(torch.tensor([t_max], dtype=torch.float64))) == -math.inf:
            # alpha(t_max) = 0 (flow schedules): infinite in lambda / sigma_tilde; take the
            # first step of the uniform grid, then the spacing from there
            start = t_max + (t_min - t_max) / (n - 1)
    if not t_min < start:
        raise ValueError("sigma_max must be above the noise level of t_min / sigma_min")
    if start < t_max:
        n -= 1  # one step is the jump from t_max to `start`
    if n == 1:
        ts = torch.tensor([start], dtype=torch.float64)
    else:
        ends = torch.tensor([start, t_min], dtype=torch.float64)
        u = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
        if spacing == "uniform":
            ts = start + u * (t_min - start)
        elif spacing == "quadratic":
            ts = t_min + (start - t_min) * (1.0 - u) ** 2
        elif spacing == "log_snr":
            lam = schedule.log_snr(ends)
            ts = schedule.t_from_log_snr(lam[0] + u * (lam[1] - lam[0]))
        else:  # edm
            v = schedule(ends)
            st = (v.sigma / v.alpha) ** (1.0 / rho)
            ts = _sigma_tilde_to_t(schedule, (st[0] + u * (st[1] - st[0])) ** rho)
        ts[0], ts[-1] = start, t_min  # exact ends despite the inverse maps' round-off
    if start < t_max:
        ts = torch.cat([torch.tensor([t_max], dtype=torch.float64), ts])
    if final_zero:
        ts = torch.cat([ts, torch.zeros(1, dtype=torch.float64)])
    return ts


def check_grid(ts, name: str = "ts") -> torch.Tensor:
    """Return ``ts`` as a 1-D float64 tensor of >= 2 strictly decreasing times in [0, 1]."""
    ts = torch.as_tensor(ts, dtype=torch.float64).detach().cpu()
    if ts.ndim != 1 or ts.numel() < 2:
        raise ValueError(
            f"{name} must be a 1-D grid of at least 2 times, got shape {tuple(ts.shape)}"
        )
    if not torch.isfinite(ts).all() or (ts < 0).any() or (ts > 1).any():
        raise ValueError(f"{name} must hold finite times in [0, 1] (t = 0 data, t = 1 noise)")
    if not (ts[1:] < ts[:-1]).all():
        raise ValueError(f"{name} must be strictly decreasing (from noise at t = 1 to data at 0)")
    return ts


@dataclass(frozen=True)
class GridValues:
    """Schedule values on a grid, as Python floats (computed once per sampler call).

    ``lam[i] = log(alpha_i / sigma_i)`` is half the log-SNR (DPM-Solver's lambda); it is
    ``+inf`` where ``sigma = 0``.
    """

    t: list[float]
    alpha: list[float]
    sigma: list[float]
    d_alpha: list[float]
    d_sigma: list[float]
    lam: list[float]

    @classmethod
    def from_path(cls, path, ts) -> GridValues:
        """Values of ``path`` on ``ts`` (memoised per schedule and grid: a pure function)."""
        ts = torch.as_tensor(ts, dtype=torch.float64).detach().cpu()
        return _cached_values(path.schedule, tuple(ts.tolist()))

    @classmethod
    def _compute(cls, schedule, ts: tuple[float, ...]) -> GridValues:
        ts = torch.tensor(ts, dtype=torch.float64)
        v = schedule(ts)
        lam = torch.log(v.alpha) - torch.log(v.sigma)
        return cls(
            ts.tolist(),
            v.alpha.tolist(),
            v.sigma.tolist(),
            v.d_alpha.tolist(),
            v.d_sigma.tolist(),
            lam.tolist(),
        )

    def __getitem__(self, i: int) -> ScheduleValues:
        """The values at grid point ``i`` (floats), for ``Field.x0_eps(..., values=)``."""
        return ScheduleValues(self.alpha[i], self.sigma[i], self.d_alpha[i], self.d_sigma[i])

    def __len__(self) -> int:
        return len(self.t)


@functools.lru_cache(maxsize=256)
def _cached_values(schedule, ts: tuple[float, ...]) -> GridValues:
    return GridValues._compute(schedule, ts)
