"""Noise schedules ``alpha(t)``, ``sigma(t)`` with hand-written derivatives (survey §2.3-§2.5).

Every probability path in probpath is ``x_t = alpha(t) * x0 + sigma(t) * eps`` with ``t`` in
``[0, 1]``, **t = 0 data, t = 1 noise**. A schedule gives ``alpha``, ``sigma`` and their time
derivatives (:class:`ScheduleValues`), the log-SNR ``lambda(t) = 2 log(alpha / sigma)`` and its
inverse, and the SDE view ``dx = f(t) x dt + g(t) dw`` of the same marginals (Eq. 42):

    f(t) = alpha'(t) / alpha(t),    g(t)^2 = d(sigma^2)/dt - 2 f(t) sigma(t)^2.

Schedules (``make_schedule(name, **kwargs)`` builds one from its JSON config):

========================  =====================================================================
``"ddpm"``                :class:`DDPMSchedule`, discrete VP (Eq. 34, 37): linear beta 1e-4..0.02
                          over N = 1000 steps, or ``betas="cosine"``
``"vp"``                  :class:`VPSchedule`, continuous VP SDE (Eq. 48), beta 0.1..20
``"subvp"``               :class:`SubVPSchedule`, sub-VP SDE (Song et al. 2021)
``"ve"``                  :class:`VESchedule`, geometric sigma_min..sigma_max (Eq. 45, 46)
``"linear"``              :class:`LinearSchedule`, alpha = 1 - t, sigma = t (rectified flow,
                          OT-CFM), optional ``sigma_min``
``"edm"``                 :class:`EDMSchedule`, alpha = 1, sigma = sigma_max * t^rho (Karras et al.)
``"gvp"``                 :class:`GVPSchedule`, alpha = cos(pi t / 2), sigma = sin(pi t / 2)
                          (the trigonometric interpolant of SiT / stochastic interpolants)
========================  =====================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

__all__ = [
    "ScheduleValues",
    "Schedule",
    "DDPMSchedule",
    "VPSchedule",
    "SubVPSchedule",
    "VESchedule",
    "LinearSchedule",
    "EDMSchedule",
    "GVPSchedule",
    "SCHEDULES",
    "make_schedule",
]


@dataclass(frozen=True)
class ScheduleValues:
    """``alpha(t)``, ``sigma(t)`` and their time derivatives, each of shape ``t.shape``.

    Samplers may also build one from Python floats (one time shared by the whole batch).
    """

    alpha: torch.Tensor | float
    sigma: torch.Tensor | float
    d_alpha: torch.Tensor | float
    d_sigma: torch.Tensor | float


def _as_t(t) -> torch.Tensor:
    t = torch.as_tensor(t)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t


class Schedule:
    """Base class: subclasses implement :meth:`__call__` (and, when closed-form, the inverse).

    Attributes:
        t_min: smallest time a sampler should visit with a network (``sigma(t_min) > 0``).
        t_max: largest time (the prior); ``1.0`` for every built-in schedule.
    """

    name: ClassVar[str] = ""
    t_min: float = 0.0
    t_max: float = 1.0

    def __call__(self, t: torch.Tensor) -> ScheduleValues:
        """Return ``alpha, sigma, d_alpha, d_sigma`` at ``t`` (any shape)."""
        raise NotImplementedError(f"{type(self).__name__} must implement __call__()")

    def config(self) -> dict[str, Any]:
        """JSON-able config; ``make_schedule(**schedule.config())`` rebuilds the schedule."""
        return {"name": self.name, **self._kwargs()}

    def _kwargs(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs().items())
        return f"{type(self).__name__}({args})"

    def _identity(self):
        # schedules that declare their kwargs compare by value; others by identity
        if type(self)._kwargs is Schedule._kwargs:
            return (type(self), id(self))
        return (type(self), tuple(sorted(self._kwargs().items())))

    def __eq__(self, other) -> bool:
        return isinstance(other, Schedule) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """``lambda(t) = log(alpha^2 / sigma^2)``, decreasing in ``t``."""
        v = self(_as_t(t))
        return 2.0 * (torch.log(v.alpha) - torch.log(v.sigma))

    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`log_snr` (default: 80 steps of vectorised bisection on [0, 1])."""
        lam = _as_t(lam)
        lo = torch.zeros_like(lam)
        hi = torch.ones_like(lam)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > lam  # log-SNR decreases with t: root lies right of mid
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def sde(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift and diffusion ``(f(t), g(t))`` of ``dx = f x dt + g dw`` (Eq. 42).

        ``f = alpha'/alpha`` and ``g^2 = 2 sigma sigma' - 2 f sigma^2`` make the SDE's marginals
        equal the path's: ``d(sigma^2)/dt = 2 f sigma^2 + g^2``.
        """
        v = self(_as_t(t))
        f = v.d_alpha / v.alpha
        g2 = 2.0 * v.sigma * v.d_sigma - 2.0 * f * v.sigma**2
        return f, torch.sqrt(torch.clamp(g2, min=0.0))

    @property
    def prior_std(self) -> float:
        """Standard deviation of the prior ``N(0, sigma(t_max)^2 I)`` (the data term dropped)."""
        return float(self(torch.tensor(self.t_max, dtype=torch.float64)).sigma)


class _VPFamily(Schedule):
    """Schedules defined by ``log alpha_bar(t)``: ``alpha = sqrt(alpha_bar)`` (Eq. 37)."""

    def _log_alpha_bar(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(log alpha_bar(t), d/dt log alpha_bar(t))``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _log_alpha_bar()")

    def __call__(self, t):
        t = _as_t(t)
        y, dy = self._log_alpha_bar(t)
        alpha = torch.exp(0.5 * y)
        d_alpha = 0.5 * alpha * dy
        sigma, d_sigma = self._sigma(y, dy)
        return ScheduleValues(alpha, sigma, d_alpha, d_sigma)

    def _sigma(self, y, dy):  # VP: sigma^2 = 1 - alpha_bar
        sigma = torch.sqrt(-torch.expm1(y))
        return sigma, -torch.exp(y) * dy / (2.0 * sigma)

    def log_snr(self, t):
        y, _ = self._log_alpha_bar(_as_t(t))
        return y - torch.log(-torch.expm1(y))


class DDPMSchedule(_VPFamily):
    """Discrete DDPM variance-preserving schedule (survey §2.4, Eq. 34 and 37).

    ``alpha_bar_i = prod_{j <= i} (1 - beta_j)`` for steps ``i = 1..N`` and ``alpha_bar_0 = 1``;
    step ``i`` sits at ``t = i / N``. Off the grid, ``log alpha_bar`` is interpolated by the
    piecewise-cubic Hermite spline through the ``N + 1`` knots with central-difference slopes
    (C^1, exact at every knot), so ODE samplers may visit any ``t``.

    Args:
        betas: ``"linear"`` (``beta_start`` to ``beta_end``, Ho et al. 2020) or ``"cosine"``
            (Nichol & Dhariwal 2021, offset ``cosine_s``, betas clipped at 0.999).
        num_steps: ``N``.

    >>> s = DDPMSchedule()
    >>> round(float(s(torch.tensor(1.0)).alpha ** 2), 8)  # alpha_bar_N
    4.036e-05
    """

    name = "ddpm"

    def __init__(
        self,
        betas: str = "linear",
        num_steps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        cosine_s: float = 0.008,
    ):
        if betas not in ("linear", "cosine"):
            raise ValueError(f"betas must be 'linear' or 'cosine', got {betas!r}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
            raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
        if not 0.0 < beta_start < beta_end < 1.0:
            raise ValueError("need 0 < beta_start < beta_end < 1; e.g. beta_start=1e-4, 0.02")
        self.betas_kind, self.num_steps = betas, num_steps
        self.beta_start, self.beta_end, self.cosine_s = beta_start, beta_end, cosine_s
        n = num_steps
        if betas == "linear":
            beta = torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
        else:
            i = torch.arange(n + 1, dtype=torch.float64)
            f = torch.cos((i / n + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
            beta = torch.clamp(1 - f[1:] / f[:-1], max=0.999)
        self.betas = beta  # (N,) float64, beta_1..beta_N
        y = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log1p(-beta), 0)])
        self.log_alpha_bar_knots = y  # (N + 1,): log alpha_bar_i at t = i / N
        m = torch.empty_like(y)
        m[1:-1] = (y[2:] - y[:-2]) * (n / 2.0)
        m[0] = (y[1] - y[0]) * n
        m[-1] = (y[-1] - y[-2]) * n
        self._slopes = m
        self.t_min = 1.0 / n
        self._cache: dict = {}

    def _kwargs(self):
        return {
            "betas": self.betas_kind,
            "num_steps": self.num_steps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "cosine_s": self.cosine_s,
        }

    def alpha_bar(self) -> torch.Tensor:
        """``alpha_bar_i`` for ``i = 1..N`` (float64), the product of Eq. (37)."""
        return torch.exp(self.log_alpha_bar_knots[1:])

    def _knots(self, like: torch.Tensor):
        """Knots and per-interval Horner coefficients on ``like``'s dtype and device."""
        key = (like.dtype, like.device)
        if key not in self._cache:
            y, n = self.log_alpha_bar_knots, self.num_steps
            m0, m1 = self._slopes[:-1] / n, self._slopes[1:] / n  # per unit of s
            dy = y[1:] - y[:-1]
            coefs = (m0, 3.0 * dy - 2.0 * m0 - m1, -2.0 * dy + m0 + m1)
            self._cache[key] = tuple(
                c.to(dtype=like.dtype, device=like.device) for c in (y,) + coefs
            )
        y, c1, c2, c3 = self._cache[key]
        return y, (c1, c2, c3)

    def _log_alpha_bar(self, t):
        y, m = self._knots(t)
        n = self.num_steps
        u = torch.clamp(t, 0.0, 1.0) * n
        i = torch.clamp(torch.floor(u), 0, n - 1).long()
        return self._hermite(y, m, i, u - i)  # u - i: position inside the interval, in [0, 1]

    def _hermite(self, y, m, i, s):
        """Cubic Hermite on interval ``i`` at ``s`` in [0, 1], in Horner form:
        ``y_i + s (m_i + s (c2_i + s c3_i))`` with slopes per unit of ``s``."""
        c0, c1, c2, c3 = y[i], m[0][i], m[1][i], m[2][i]
        val = c0 + s * (c1 + s * (c2 + s * c3))
        dval = (c1 + s * (2.0 * c2 + 3.0 * s * c3)) * self.num_steps
        return val, dval

    def t_from_log_snr(self, lam):
        """Inverse of the log-SNR: find the knot interval, then Newton on the cubic."""
        lam = _as_t(lam)
        target = torch.nn.functional.logsigmoid(lam)  # log alpha_bar = log sigmoid(lambda)
        y, m = self._knots(target)
        n = self.num_steps
        # knots decrease: search the negated ones; interval i holds target in [y_{i+1}, y_i]
        i = torch.searchsorted(-y, -target.contiguous()) - 1
        i = torch.clamp(i, 0, n - 1)
        s = torch.clamp((target - y[i]) / (y[i + 1] - y[i]), 0.0, 1.0)
        for _ in range(3):  # the cubic is nearly linear on one interval: Newton converges fast
            val, dval = self._hermite(y, m, i, s)
            s = torch.clamp(s - (val - target) / (dval / n), 0.0, 1.0)
        return (i + s) / n


class VPSchedule(_VPFamily):
    """Continuous variance-preserving SDE (survey Eq. 48): ``beta(t) = b_min + t (b_max - b_min)``.

    ``log alpha_bar(t) = -(b_min t + (b_max - b_min) t^2 / 2)``; log-SNR inverse in closed form.
    """

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3):
        if not 0.0 < beta_min < beta_max:
            raise ValueError("need 0 < beta_min < beta_max; e.g. beta_min=0.1, beta_max=20")
        self.beta_min, self.beta_max, self.t_min = float(beta_min), float(beta_max), float(t_min)

    def _kwargs(self):
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "t_min": self.t_min}

    def _log_alpha_bar(self, t):
        d = self.beta_max - self.beta_min
        return -(self.beta_min * t + 0.5 * d * t * t), -(self.beta_min + d * t)

    def t_from_log_snr(self, lam):
        lam = _as_t(lam)
        d = self.beta_max - self.beta_min
        c = torch.nn.functional.softplus(-lam)  # = -log alpha_bar
        return 2.0 * c / (self.beta_min + torch.sqrt(self.beta_min**2 + 2.0 * d * c))


class SubVPSchedule(VPSchedule):
    """Sub-VP SDE (Song et al. 2021): VP's ``alpha``, ``sigma = 1 - alpha_bar``."""

    name = "subvp"

    def _sigma(self, y, dy):
        return -torch.expm1(y), -torch.exp(y) * dy

    def log_snr(self, t):
        y, _ = self._log_alpha_bar(_as_t(t))
        return y - 2.0 * torch.log(-torch.expm1(y))

    def t_from_log_snr(self, lam):
        # alpha_bar = e^lam (1 - alpha_bar)^2: the root in (0, 1) of a quadratic in alpha_bar.
        lam = _as_t(lam)
        a = torch.exp(-lam)  # (1 - ab)^2 = a * ab  ->  ab^2 - (2 + a) ab + 1 = 0
        ab = 2.0 / ((2.0 + a) + torch.sqrt(a * a + 4.0 * a))
        return super().t_from_log_snr(torch.log(ab) - torch.log(-torch.expm1(torch.log(ab))))


class VESchedule(Schedule):
    """Variance-exploding SDE (survey Eq. 45-46): ``alpha = 1``, geometric ``sigma``.

    ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``; note ``sigma(0) = sigma_min > 0``.
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError("need 0 < sigma_min < sigma_max; e.g. sigma_min=0.01, sigma_max=50")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def _kwargs(self):
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}

    def __call__(self, t):
        t = _as_t(t)
        r = math.log(self.sigma_max / self.sigma_min)
        sigma = self.sigma_min * torch.exp(r * t)
        one = torch.ones_like(t)
        return ScheduleValues(one, sigma, torch.zeros_like(t), r * sigma)

    def log_snr(self, t):
        t = _as_t(t)
        return -2.0 * (math.log(self.sigma_min) + math.log(self.sigma_max / self.sigma_min) * t)

    def t_from_log_snr(self, lam):
        lam = _as_t(lam)
        return (-0.5 * lam - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)


class LinearSchedule(Schedule):
    """Linear / OT path (rectified flow, OT-CFM): ``alpha = 1 - t``, ``sigma = s + (1 - s) t``.

    ``s = sigma_min`` (0 by default; Lipman et al. 2023 use a small ``sigma_min``). In the
    flow-matching papers' time ``tau = 1 - t`` (tau = 1 data) this is
    ``x_tau = tau x1 + (1 - (1 - sigma_min) tau) x0``.
    """

    name = "linear"

    def __init__(self, sigma_min: float = 0.0):
        if not 0.0 <= sigma_min < 1.0:
            raise ValueError(f"sigma_min must be in [0, 1), got {sigma_min!r}")
        self.sigma_min = float(sigma_min)
        self.t_min = 1e-3 if sigma_min == 0.0 else 0.0

    def _kwargs(self):
        return {"sigma_min": self.sigma_min}

    def __call__(self, t):
        t = _as_t(t)
        s = self.sigma_min
        sigma = t if s == 0.0 else s + (1.0 - s) * t
        return ScheduleValues(1.0 - t, sigma, torch.full_like(t, -1.0), torch.full_like(t, 1.0 - s))

    def t_from_log_snr(self, lam):
        r = torch.exp(0.5 * _as_t(lam))  # alpha / sigma
        s = self.sigma_min
        return (1.0 - r * s) / (1.0 + r * (1.0 - s))


class EDMSchedule(Schedule):
    """EDM's sigma-space (Karras et al. 2022): ``alpha = 1``, ``sigma(t) = sigma_max t^rho``.

    A uniform grid in ``t`` is EDM's rho-grid from ``sigma_max`` down to 0; ``t_min`` is the
    time of ``sigma_min``. EDM's preconditioning (``c_skip, c_out, c_in, c_noise``) lives in
    :class:`probpath.paths.field.PathField` (``precondition=True``).
    """

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        if not 0.0 < sigma_min < sigma_max or rho <= 0:
            raise ValueError("need 0 < sigma_min < sigma_max and rho > 0 (EDM: 0.002, 80, 7)")
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)
        self.t_min = (self.sigma_min / self.sigma_max) ** (1.0 / self.rho)

    def _kwargs(self):
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "rho": self.rho}

    def __call__(self, t):
        t = _as_t(t)
        sigma = self.sigma_max * t**self.rho
        d_sigma = self.rho * self.sigma_max * t ** (self.rho - 1.0)
        return ScheduleValues(torch.ones_like(t), sigma, torch.zeros_like(t), d_sigma)

    def t_from_log_snr(self, lam):
        return (torch.exp(-0.5 * _as_t(lam)) / self.sigma_max) ** (1.0 / self.rho)


class GVPSchedule(Schedule):
    """Generalised VP / trigonometric interpolant: ``alpha = cos(pi t / 2)``,
    ``sigma = sin(pi t / 2)`` (Albergo et al. 2023; SiT, Ma et al. 2024, "GVP").

    ``alpha^2 + sigma^2 = 1`` at every ``t`` (variance preserving for unit-variance data) and,
    unlike the VP SDE, ``alpha(1) = 0`` exactly: the prior ``N(0, I)`` is the path's marginal
    at ``t = 1``. In SiT's time (``tau = 1 - t``, data at ``tau = 1``) this is
    ``x_tau = sin(pi tau / 2) x0 + cos(pi tau / 2) eps``. ``alpha`` is computed as
    ``sin(pi (1 - t) / 2)`` so that it is exactly 0 at ``t = 1`` in every float precision.

    >>> v = GVPSchedule()(torch.tensor([0.0, 1.0]))
    >>> v.alpha.tolist(), v.sigma.tolist()
    ([1.0, 0.0], [0.0, 1.0])
    """

    name = "gvp"
    t_min = 1e-3  # sigma(0) = 0: the last network time before the final step to t = 0

    def _kwargs(self):
        return {}  # no parameters: every GVPSchedule is equal (compares by value)

    def __call__(self, t):
        t = _as_t(t)
        half_pi = 0.5 * math.pi
        alpha, sigma = torch.sin(half_pi * (1.0 - t)), torch.sin(half_pi * t)
        return ScheduleValues(alpha, sigma, -half_pi * sigma, half_pi * alpha)

    def t_from_log_snr(self, lam):
        # alpha / sigma = cot(pi t / 2) = exp(lam / 2)
        return torch.atan(torch.exp(-0.5 * _as_t(lam))) * (2.0 / math.pi)


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls
    for cls in (
        DDPMSchedule,
        VPSchedule,
        SubVPSchedule,
        VESchedule,
        LinearSchedule,
        EDMSchedule,
        GVPSchedule,
    )
}


def make_schedule(name: str | Schedule, **kwargs) -> Schedule:
    """Build a schedule from its name and keyword arguments (or return a schedule unchanged).

    >>> make_schedule("vp", beta_max=20.0)
    VPSchedule(beta_min=0.1, beta_max=20.0, t_min=0.001)
    """
    if isinstance(name, Schedule):
        return name
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}; got {name!r}")
    return SCHEDULES[name](**kwargs)
