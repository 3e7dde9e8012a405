"""The one call into torchdiffeq: integrate ``dy/dt = rhs(t, y)`` from ``t0`` to ``t1``.

Used by the adaptive probability-flow sampler, the ODE log-likelihood (survey Eq. 55) and
the CNF's sampler, so tolerances, fixed-step grids and the end-point rule are the same
everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["FIXED_GRID_METHODS", "integrate"]

#: torchdiffeq methods that step on a fixed grid (no error control).
FIXED_GRID_METHODS = ("euler", "midpoint", "heun3", "rk4", "explicit_adams", "implicit_adams")


def integrate(
    rhs: Callable,
    state0,
    t0: float,
    t1: float,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
):
    """The state at ``t1`` of ``dy/dt = rhs(t, y)`` started from ``state0`` at ``t0``.

    Args:
        rhs: ``rhs(t, y)`` with ``t`` a 0-dim tensor and ``y`` like ``state0`` (a tensor or a
            tuple of tensors).
        state0: the initial state.
        t0, t1: start and end times (either order).
        method, rtol, atol: a torchdiffeq method and its tolerances (adaptive ``"dopri5"`` by
            default). Adaptive methods end their last step exactly at ``t1``: no stage is
            evaluated beyond it (``step_t``), which matters where the field is singular
            past the end (``sigma -> 0``).
        steps: if given, ``steps`` equal RK4 steps instead (``method`` and tolerances are
            ignored): a fixed, predictable cost of ``4 * steps`` evaluations.

    Returns:
        The state at ``t1`` (same structure as ``state0``).
    """
    from torchdiffeq import odeint

    like = state0[0] if isinstance(state0, tuple) else state0
    kw = {"dtype": like.dtype, "device": like.device}
    if steps is not None:
        span = torch.linspace(t0, t1, int(steps) + 1, **kw)
        sol = odeint(rhs, state0, span, method="rk4")
    else:
        span = torch.tensor([t0, t1], **kw)
        options = {} if method in FIXED_GRID_METHODS else {"step_t": span}
        sol = odeint(rhs, state0, span, method=method, rtol=rtol, atol=atol, options=options)
    return tuple(s[-1] for s in sol) if isinstance(sol, tuple) else sol[-1]
