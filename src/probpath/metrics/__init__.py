"""Sample-quality and likelihood metrics: MMD, sliced Wasserstein, energy and Fréchet
distances, precision / recall (in pixels or in a domain classifier's features, the FID
recipe), NLL / bits-per-dim with dequantisation, and the two-sample
noise floor, and the Factor-CLS disentanglement score of codes (Higgins et al. 2017).

All two-sample metrics flatten their inputs to ``(N, D)``, compute in float64 and return
Python floats.
"""

from probpath.metrics.disentanglement import (
    FactorCLSResult,
    factor_cls_score,
    factor_cls_votes,
)
from probpath.metrics.energy import energy_distance
from probpath.metrics.features import (
    FeatureExtractor,
    feature_frechet_distance,
    feature_precision_recall,
    fit_feature_extractor,
)
from probpath.metrics.floor import noise_floor
from probpath.metrics.frechet import frechet_distance, frechet_distance_gaussian
from probpath.metrics.likelihood import (
    NLLResult,
    bits_per_dim,
    dataset_nll,
    dequantize,
    nll_nats,
    quantize,
)
from probpath.metrics.mmd import median_bandwidth, mmd
from probpath.metrics.precision_recall import PrecisionRecall, precision_recall
from probpath.metrics.sliced import sliced_wasserstein, wasserstein_1d

__all__ = [
    "FactorCLSResult",
    "FeatureExtractor",
    "NLLResult",
    "PrecisionRecall",
    "bits_per_dim",
    "dataset_nll",
    "dequantize",
    "quantize",
    "energy_distance",
    "factor_cls_score",
    "factor_cls_votes",
    "feature_frechet_distance",
    "feature_precision_recall",
    "fit_feature_extractor",
    "frechet_distance",
    "frechet_distance_gaussian",
    "median_bandwidth",
    "mmd",
    "nll_nats",
    "noise_floor",
    "precision_recall",
    "sliced_wasserstein",
    "wasserstein_1d",
]
