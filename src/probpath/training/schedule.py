"""Learning-rate schedules: linear warm-up followed by cosine decay (over a step or a time
budget) or a constant rate."""

from __future__ import annotations

import math

__all__ = ["LR_SCHEDULES", "lr_factor"]

LR_SCHEDULES = ("cosine", "constant")


def lr_factor(
    step: int,
    *,
    warmup_steps: int,
    total_steps: int | None,
    kind: str,
    time_fraction: float | None = None,
) -> float:
    """Multiplier of the base learning rate for optimizer update number ``step`` (from 0).

    Warm-up ramps linearly, ``(step + 1) / warmup_steps``, so the first update is not taken
    at rate zero. Afterwards ``"cosine"`` decays as ``0.5 * (1 + cos(pi * p))``, where ``p``
    is the share of the training budget used: ``(step - warmup_steps) / (total_steps -
    warmup_steps)`` for a step budget, ``time_fraction`` (seconds used / time budget) for a
    time budget, and the larger of the two when both bound training (whichever budget ends
    training first also ends the decay). With neither, the rate stays constant.

    >>> [round(lr_factor(s, warmup_steps=2, total_steps=6, kind="cosine"), 3) for s in range(6)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    >>> lr_factor(100, warmup_steps=2, total_steps=None, kind="cosine", time_fraction=0.5)
    0.5
    """
    if kind not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {kind!r}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    shares = [] if time_fraction is None else [time_fraction]
    if total_steps is not None:
        shares.append((step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == "constant" or not shares:
        return 1.0
    progress = min(1.0, max(0.0, *shares))
    return 0.5 * (1.0 + math.cos(math.pi * progress))
