"""The affine Gaussian probability path ``x_t = alpha_t x0 + sigma_t eps`` (survey §2.4, §3.3).

One object serves diffusion (Eq. 37), score SDEs (Eq. 42-48) and flow matching (Eq. 58-59):
it samples ``x_t`` with its conditional velocity ``d_alpha x0 + d_sigma eps`` (the CFM target),
gives the SDE coefficients ``(f, g)`` of the same marginals, and the prior at ``t = 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from probpath.core.broadcast import append_dims, expand_t
from probpath.core.validation import check_tensor
from probpath.paths.schedules import Schedule, ScheduleValues, make_schedule

__all__ = ["PathSample", "AffinePath"]


@dataclass(frozen=True)
class PathSample:
    """One draw from the path. Tensors ``x_t, x0, eps, velocity``: ``(batch, *event)``;
    ``t, alpha, sigma, d_alpha, d_sigma``: ``(batch,)``."""

    x_t: torch.Tensor
    t: torch.Tensor
    x0: torch.Tensor
    eps: torch.Tensor
    alpha: torch.Tensor
    sigma: torch.Tensor
    d_alpha: torch.Tensor
    d_sigma: torch.Tensor
    velocity: torch.Tensor


class AffinePath:
    """``x_t = alpha(t) x0 + sigma(t) eps`` with ``eps ~ N(0, I)`` for a :class:`Schedule`.

    Args:
        schedule: a :class:`~probpath.paths.schedules.Schedule` or a schedule name
            (``"ddpm"``, ``"vp"``, ``"subvp"``, ``"ve"``, ``"linear"``, ``"edm"``).

    >>> path = AffinePath("linear")
    >>> s = path.sample(torch.zeros(4, 2), torch.full((4,), 0.5), generator=torch.Generator())
    >>> tuple(s.x_t.shape), float(s.alpha[0])
    ((4, 2), 0.5)
    """

    def __init__(self, schedule: Schedule | str = "vp", **schedule_kwargs):
        self.schedule = make_schedule(schedule, **schedule_kwargs)

    def __repr__(self) -> str:
        return f"AffinePath({self.schedule!r})"

    def __call__(self, t: torch.Tensor) -> ScheduleValues:
        """The schedule's ``ScheduleValues`` at ``t``."""
        return self.schedule(t)

    @property
    def t_min(self) -> float:
        return self.schedule.t_min

    @property
    def t_max(self) -> float:
        return self.schedule.t_max

    def sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor | float,
        eps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PathSample:
        """Draw ``x_t`` given data ``x0`` ``(batch, *event)`` and times ``t`` ``(batch,)``.

        ``eps`` is drawn from ``N(0, I)`` with ``generator`` when not given.
        """
        if not isinstance(x0, torch.Tensor) or x0.ndim < 1:
            x0 = check_tensor(x0, "x0", min_ndim=1)  # models validate their input before this
        t = expand_t(t, x0)
        if t.shape != x0.shape[:1]:
            raise ValueError(f"t must have shape (batch,) = ({x0.shape[0]},), got {tuple(t.shape)}")
        if eps is None:
            eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        elif eps.shape != x0.shape:
            raise ValueError(f"eps must have x0's shape {tuple(x0.shape)}, got {tuple(eps.shape)}")
        v = self.schedule(t)
        a, s = append_dims(v.alpha, x0), append_dims(v.sigma, x0)
        da, ds = append_dims(v.d_alpha, x0), append_dims(v.d_sigma, x0)
        return PathSample(
            x_t=torch.addcmul(a * x0, s, eps),
            t=t,
            x0=x0,
            eps=eps,
            alpha=v.alpha,
            sigma=v.sigma,
            d_alpha=v.d_alpha,
            d_sigma=v.d_sigma,
            velocity=torch.addcmul(da * x0, ds, eps),
        )

    def sde_coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f(t), g(t))`` of the forward SDE ``dx = f x dt + g dw`` (survey Eq. 42)."""
        return self.schedule.sde(t)

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return self.schedule.log_snr(t)

    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        return self.schedule.t_from_log_snr(lam)

    def prior_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Draw ``x_1 ~ N(0, sigma(1)^2 I)`` of ``shape = (batch, *event)``."""
        return self.schedule.prior_std * torch.randn(
            tuple(shape), generator=generator, device=device, dtype=dtype
        )

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log N(x; 0, sigma(1)^2 I)`` summed over the event dims -> ``(batch,)``."""
        s = self.schedule.prior_std
        flat = x.reshape(x.shape[0], -1)
        d = flat.shape[1]
        return -0.5 * (flat**2).sum(1) / s**2 - d * (math.log(s) + 0.5 * math.log(2 * math.pi))
