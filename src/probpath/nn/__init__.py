"""Small reference networks: MLP, time-conditioned MLP, small UNet, DiT, time features, and the
convolutional encoder / decoder of the VAEs and GANs."""

from probpath.nn.conv import ConvDecoder, ConvEncoder, decoder_network, encoder_network
from probpath.nn.dit import DiT
from probpath.nn.embeddings import FourierFeatures, SinusoidalEmbedding, time_embedding
from probpath.nn.mlp import MLP, activation
from probpath.nn.time_mlp import TimeMLP
from probpath.nn.unet import UNet

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "DiT",
    "MLP",
    "FourierFeatures",
    "SinusoidalEmbedding",
    "TimeMLP",
    "UNet",
    "activation",
    "decoder_network",
    "encoder_network",
    "time_embedding",
]
