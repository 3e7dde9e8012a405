"""Exponential moving average (EMA) of a model's weights, the usual sampling-time model."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """A frozen copy of ``model`` whose floating parameters track an exponential average.

    After each optimizer step, ``update(model, step)`` sets
    ``theta_ema <- d * theta_ema + (1 - d) * theta`` for every floating parameter, and copies
    buffers (running statistics, schedule tables) verbatim. With ``warmup`` the decay ramps
    up as ``d = min(decay, (1 + step) / (10 + step))`` (``step`` = updates done before this
    one), so a short run is not dominated by the random initialisation (the usual EMA
    warm-up of TensorFlow's ``num_updates`` and timm); ``step=None`` uses ``decay`` itself.

    Args:
        model: the model being trained (its current weights start the average).
        decay: the EMA decay in ``[0, 1)``, e.g. 0.999.
        warmup: ramp the decay up over the first steps.

    Attributes:
        model: the averaged copy (``eval`` mode, no gradients); save or sample from it.

    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> ema = EMA(net, decay=0.5)
    >>> with torch.no_grad():
    ...     _ = net.weight.add_(2.0)
    >>> ema.update(net)
    >>> torch.allclose(ema.model.weight, net.weight - 1.0)
    True
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}; use None to disable EMA")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.model = copy.deepcopy(model)
        self.model.eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def decay_at(self, step: int | None) -> float:
        """The decay used by the update after ``step`` earlier updates."""
        if step is None or not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + step) / (10.0 + step))

    def update(self, model: nn.Module, step: int | None = None) -> None:
        """Move the average towards ``model``'s current weights (call after each step)."""
        weight = 1.0 - self.decay_at(step)
        for avg, p in zip(self.model.parameters(), model.parameters()):
            if avg.is_floating_point():
                avg.lerp_(p.detach(), weight)
            else:
                avg.copy_(p)
        for avg, b in zip(self.model.buffers(), model.buffers()):
            avg.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged model's state dict (what ``ema.safetensors`` holds)."""
        return self.model.state_dict()
