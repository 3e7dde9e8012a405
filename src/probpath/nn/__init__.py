"""Small reference networks: MLP, time-conditioned MLP, small UNet, time features."""

from probpath.nn.embeddings import FourierFeatures, SinusoidalEmbedding, time_embedding
from probpath.nn.mlp import MLP, activation
from probpath.nn.time_mlp import TimeMLP
from probpath.nn.unet import UNet

__all__ = [
    "MLP",
    "FourierFeatures",
    "SinusoidalEmbedding",
    "TimeMLP",
    "UNet",
    "activation",
    "time_embedding",
]
