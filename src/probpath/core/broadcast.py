"""Broadcast per-sample coefficients over the trailing (event) dimensions of a batch."""

from __future__ import annotations

import torch

__all__ = ["append_dims", "expand_t"]


def append_dims(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``coef`` of shape ``(batch,)`` (or a scalar) to ``(batch, 1, ..., 1)``.

    The result broadcasts against ``like`` of shape ``(batch, *event_shape)``; this is the one
    place probpath writes ``[:, None, None, ...]``.

    >>> append_dims(torch.ones(3), torch.zeros(3, 2, 4)).shape
    torch.Size([3, 1, 1])
    """
    if coef.ndim == 0:
        return coef
    extra = like.ndim - coef.ndim
    if extra < 0:
        raise ValueError(
            f"coefficient has {coef.ndim} dims but the data only {like.ndim}; "
            "pass a (batch,) tensor"
        )
    return coef.reshape(coef.shape + (1,) * extra)


def expand_t(t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return ``t`` as a ``(batch,)`` tensor on ``x``'s device and dtype (a float is repeated)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    return t
