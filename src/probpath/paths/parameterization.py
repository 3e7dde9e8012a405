"""The conversion hub: every prediction kind to and from ``(x0_hat, eps_hat)`` (survey §2.4-§3.3).

On the path ``x_t = alpha x0 + sigma eps`` a network may predict

* ``EPS``      the noise ``eps`` (DDPM, Eq. 39-41),
* ``X0``       the clean data ``x0`` (EDM's denoiser ``D``),
* ``V``        ``v = alpha eps - sigma x0`` (Salimans & Ho 2022),
* ``SCORE``    ``grad log p_t(x_t) = -eps / sigma`` (NCSN / score SDE, Eq. 43-44),
* ``VELOCITY`` ``dx_t/dt = d_alpha x0 + d_sigma eps`` (flow matching, Eq. 58).

Each kind is two small functions (to and from ``(x0, eps)``); :func:`convert` goes through the
pair. This module is the only place in probpath that branches on a prediction kind.
"""

from __future__ import annotations

from enum import Enum

import torch

from probpath.core.broadcast import append_dims, expand_t
from probpath.paths.schedules import ScheduleValues

__all__ = ["Prediction", "to_x0_eps", "from_x0_eps", "convert"]


class Prediction(str, Enum):
    """What a field outputs (a ``str`` enum: ``Prediction("eps")`` works, configs stay JSON)."""

    EPS = "eps"
    X0 = "x0"
    V = "v"
    SCORE = "score"
    VELOCITY = "velocity"


def _coefs(x_t, t, path, values):
    if values is None:
        values = path(expand_t(t, x_t))
    return tuple(
        c if isinstance(c, float) else append_dims(c, x_t)
        for c in (values.alpha, values.sigma, values.d_alpha, values.d_sigma)
    )


def _eps_to(out, x, a, s, da, ds):
    return torch.sub(x, out, alpha=s) / a if isinstance(s, float) else (x - s * out) / a, out


def _x0_to(out, x, a, s, da, ds):
    return out, (x - a * out) / s


def _v_to(out, x, a, s, da, ds):
    n = a * a + s * s
    return (a * x - s * out) / n, (s * x + a * out) / n


def _score_to(out, x, a, s, da, ds):
    eps = -s * out
    return (x - s * eps) / a, eps


def _velocity_to(out, x, a, s, da, ds):
    det = a * ds - s * da  # > 0 on every built-in schedule
    return (ds * x - s * out) / det, (a * out - da * x) / det


_TO = {
    Prediction.EPS: _eps_to,
    Prediction.X0: _x0_to,
    Prediction.V: _v_to,
    Prediction.SCORE: _score_to,
    Prediction.VELOCITY: _velocity_to,
}

_FROM = {
    Prediction.EPS: lambda x0, eps, x, a, s, da, ds: eps,
    Prediction.X0: lambda x0, eps, x, a, s, da, ds: x0,
    Prediction.V: lambda x0, eps, x, a, s, da, ds: a * eps - s * x0,
    Prediction.SCORE: lambda x0, eps, x, a, s, da, ds: -eps / s,
    Prediction.VELOCITY: lambda x0, eps, x, a, s, da, ds: da * x0 + ds * eps,
}


def to_x0_eps(
    out: torch.Tensor,
    kind: Prediction | str,
    x_t: torch.Tensor,
    t: torch.Tensor | float,
    path,
    *,
    values: ScheduleValues | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a prediction ``out`` of ``kind`` at ``(x_t, t)`` to ``(x0_hat, eps_hat)``.

    Args:
        out, x_t: ``(batch, *event)``.
        t: ``(batch,)`` or a float.
        path: an :class:`~probpath.paths.affine.AffinePath` (anything callable ``t ->
            ScheduleValues``).
        values: the path's values at ``t`` when already computed (skips the schedule call);
            tensors ``(batch,)`` or Python floats (one time for the whole batch).

    ``EPS`` and ``SCORE`` divide by ``alpha`` (undefined where ``alpha = 0``), ``X0`` by
    ``sigma`` (undefined where ``sigma = 0``); ``V`` and ``VELOCITY`` are defined everywhere.
    """
    return _TO[Prediction(kind)](out, x_t, *_coefs(x_t, t, path, values))


def from_x0_eps(
    x0_hat: torch.Tensor,
    eps_hat: torch.Tensor,
    kind: Prediction | str,
    x_t: torch.Tensor,
    t: torch.Tensor | float,
    path,
    *,
    values: ScheduleValues | None = None,
) -> torch.Tensor:
    """Map ``(x0_hat, eps_hat)`` at ``(x_t, t)`` to a prediction of ``kind`` (shapes as above)."""
    return _FROM[Prediction(kind)](x0_hat, eps_hat, x_t, *_coefs(x_t, t, path, values))


def convert(
    out: torch.Tensor,
    src: Prediction | str,
    dst: Prediction | str,
    x_t: torch.Tensor,
    t: torch.Tensor | float,
    path,
    *,
    values: ScheduleValues | None = None,
) -> torch.Tensor:
    """Convert a prediction from kind ``src`` to kind ``dst`` through ``(x0_hat, eps_hat)``.

    >>> from probpath.paths.affine import AffinePath
    >>> path, x = AffinePath("linear"), torch.ones(2, 3)
    >>> eps = torch.zeros(2, 3)
    >>> convert(eps, "eps", "x0", x, 0.5, path)[0].tolist()
    [2.0, 2.0, 2.0]
    """
    src, dst = Prediction(src), Prediction(dst)
    if src is dst:
        return out
    coefs = _coefs(x_t, t, path, values)
    x0_hat, eps_hat = _TO[src](out, x_t, *coefs)
    return _FROM[dst](x0_hat, eps_hat, x_t, *coefs)
