"""Small convolutional encoder / decoder blocks for 8x8 to 32x32 images (VAEs and GANs).

``ConvEncoder`` halves the resolution once per entry of ``channels`` (3x3 convolutions with
stride 2) and ends in a linear layer; ``ConvDecoder`` mirrors it with transposed
convolutions. They serve as VAE encoder/decoder, GAN discriminator/generator and the
VQ-VAE's token encoder/decoder (``flatten=False`` keeps the feature map).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probpath.nn.mlp import MLP, activation

__all__ = [
    "ConvEncoder",
    "ConvDecoder",
    "conv_output_size",
    "encoder_network",
    "decoder_network",
]


def conv_output_size(image_size: int, n_down: int) -> int:
    """Spatial size after ``n_down`` stride-2 halvings; raises if it does not divide evenly.

    >>> conv_output_size(8, 2)
    2
    """
    if image_size % (2**n_down) != 0:
        raise ValueError(
            f"image size {image_size} is not divisible by 2**{n_down}; use images whose side "
            f"is a multiple of {2**n_down} or fewer entries in channels"
        )
    return image_size // (2**n_down)


class ConvEncoder(nn.Module):
    """``(batch, C, H, W) -> (batch, out_dim)`` (or a feature map with ``out_dim=None``).

    Args:
        in_channels: image channels ``C``.
        image_size: ``(H, W)``, each divisible by ``2 ** len(channels)``.
        out_dim: output features of the final linear layer; ``None`` returns the
            ``(batch, channels[-1], H', W')`` feature map instead.
        channels: widths of the stride-2 convolution stages.
        act: activation name (see :func:`probpath.nn.mlp.activation`).

    >>> ConvEncoder(1, (8, 8), 5, channels=(4, 8))(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 5])
    """

    def __init__(
        self,
        in_channels: int,
        image_size: Sequence[int],
        out_dim: int | None,
        channels: Sequence[int] = (32, 64),
        act: str = "silu",
    ):
        super().__init__()
        h, w = (conv_output_size(int(s), len(channels)) for s in image_size)
        layers: list[nn.Module] = []
        c_prev = in_channels
        for c in channels:
            layers += [nn.Conv2d(c_prev, c, 3, stride=2, padding=1), activation(act)]
            c_prev = c
        self.features = nn.Sequential(*layers)
        self.feature_shape = (c_prev, h, w)
        self.head = None if out_dim is None else nn.Linear(c_prev * h * w, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return h if self.head is None else self.head(h.flatten(1))


class ConvDecoder(nn.Module):
    """``(batch, in_dim) -> (batch, out_channels, H, W)`` (or from a feature map).

    Args:
        in_dim: input features; ``None`` takes a ``(batch, channels[0], H', W')`` map.
        out_channels: output channels.
        image_size: ``(H, W)``, each divisible by ``2 ** len(channels)``.
        channels: widths of the stride-2 transposed-convolution stages (coarse to fine).
        act: activation name.

    >>> ConvDecoder(5, 1, (8, 8), channels=(8, 4))(torch.zeros(2, 5)).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        in_dim: int | None,
        out_channels: int,
        image_size: Sequence[int],
        channels: Sequence[int] = (64, 32),
        act: str = "silu",
    ):
        super().__init__()
        h, w = (conv_output_size(int(s), len(channels)) for s in image_size)
        self.input_shape = (channels[0], h, w)
        self.head = None
        if in_dim is not None:
            self.head = nn.Sequential(nn.Linear(in_dim, channels[0] * h * w), activation(act))
        layers: list[nn.Module] = []
        c_prev = channels[0]
        for c in channels:
            layers += [nn.ConvTranspose2d(c_prev, c, 4, stride=2, padding=1), activation(act)]
            c_prev = c
        layers.append(nn.Conv2d(c_prev, out_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.head is not None:
            z = self.head(z).reshape(z.shape[0], *self.input_shape)
        return self.body(z)


def _check_architecture(architecture: str, event_shape: Sequence[int]) -> None:
    if architecture not in ("mlp", "conv"):
        raise ValueError(f"architecture must be 'mlp' or 'conv', got {architecture!r}")
    if architecture == "conv" and len(event_shape) != 3:
        raise ValueError(
            f"architecture='conv' needs images of shape (C, H, W), got event_shape "
            f"{tuple(event_shape)}; use architecture='mlp' for vectors"
        )


def encoder_network(
    event_shape: Sequence[int],
    out_dim: int,
    architecture: str = "mlp",
    hidden: Sequence[int] = (128, 128),
    channels: Sequence[int] = (32, 64),
    act: str = "silu",
) -> nn.Module:
    """A network ``(batch, *event_shape) -> (batch, out_dim)``.

    ``architecture="mlp"`` flattens the event and applies an :class:`~probpath.nn.mlp.MLP`
    with widths ``hidden`` (``()`` gives a single linear map); ``"conv"`` uses
    :class:`ConvEncoder` with ``channels`` (images only).

    >>> encoder_network((3,), 4, hidden=())(torch.zeros(2, 3)).shape
    torch.Size([2, 4])
    """
    _check_architecture(architecture, event_shape)
    if architecture == "conv":
        return ConvEncoder(event_shape[0], event_shape[1:], out_dim, channels, act)
    dim = int(torch.Size(event_shape).numel())
    return nn.Sequential(nn.Flatten(1), MLP(dim, out_dim, tuple(hidden), act))


def decoder_network(
    in_dim: int,
    event_shape: Sequence[int],
    architecture: str = "mlp",
    hidden: Sequence[int] = (128, 128),
    channels: Sequence[int] = (32, 64),
    act: str = "silu",
) -> nn.Module:
    """A network ``(batch, in_dim) -> (batch, *event_shape)``, the mirror of the encoder.

    ``hidden`` is used in reverse order for the MLP and ``channels`` reversed for the
    convolutional decoder, so encoder and decoder share one configuration.

    >>> decoder_network(4, (1, 8, 8), "conv", channels=(4, 8))(torch.zeros(2, 4)).shape
    torch.Size([2, 1, 8, 8])
    """
    _check_architecture(architecture, event_shape)
    if architecture == "conv":
        return ConvDecoder(in_dim, event_shape[0], event_shape[1:], tuple(channels)[::-1], act)
    dim = int(torch.Size(event_shape).numel())
    return nn.Sequential(
        MLP(in_dim, dim, tuple(hidden)[::-1], act), nn.Unflatten(1, tuple(event_shape))
    )
