"""Learning-rate schedules: linear warm-up followed by cosine decay or a constant rate."""

from __future__ import annotations

import math

__all__ = ["LR_SCHEDULES", "lr_factor"]

LR_SCHEDULES = ("cosine", "constant")


def lr_factor(step: int, *, warmup_steps: int, total_steps: int | None, kind: str) -> float:
    """Multiplier of the base learning rate for optimizer update number ``step`` (from 0).

    Warm-up ramps linearly, ``(step + 1) / warmup_steps``, so the first update is not taken
    at rate zero. Afterwards ``"cosine"`` decays as ``0.5 * (1 + cos(pi * p))`` with
    ``p = (step - warmup_steps) / (total_steps - warmup_steps)``; it needs ``total_steps``
    and is constant when training is bounded by a time budget only (``total_steps=None``).

    >>> [round(lr_factor(s, warmup_steps=2, total_steps=6, kind="cosine"), 3) for s in range(6)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    if kind not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {kind!r}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant" or total_steps is None:
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return 0.5 * (1.0 + math.cos(math.pi * progress))
