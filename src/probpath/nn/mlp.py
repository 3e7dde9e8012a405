"""A plain multilayer perceptron, the building block of the small reference networks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["MLP", "activation"]

_ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "elu": nn.ELU}


def activation(name: str) -> nn.Module:
    """An activation module by name (silu, relu, gelu, tanh, elu)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """``in_dim -> hidden... -> out_dim`` with an activation between layers.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden: widths of the hidden layers, e.g. ``(128, 128)``.
        act: activation name.
        zero_last: initialise the last layer to zero (useful for residual / flow layers).

    Shapes: ``(batch, in_dim) -> (batch, out_dim)``.

    >>> import torch
    >>> MLP(2, 3, (8,))(torch.zeros(4, 2)).shape
    torch.Size([4, 3])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (128, 128),
        act: str = "silu",
        zero_last: bool = False,
    ):
        layers: list[nn.Module] = []
        widths = [in_dim, *hidden]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), activation(act)]
        last = nn.Linear(widths[-1], out_dim)
        if zero_last:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        super().__init__(*layers)
