"""Sample-quality and likelihood metrics: MMD, sliced Wasserstein, energy and Fréchet
distances, precision / recall (in pixels or in a domain classifier's features, the FID
recipe), NLL / bits-per-dim with dequantisation, and the two-sample
noise floor, and the Factor-CLS disentanglement score of codes (Higgins et al. 2017).

:mod:`probpath.metrics.registry` lists them (direction, unit, needs) for every table and
command; :mod:`probpath.metrics.shipped` holds the one digits classifier of FD features;
:mod:`probpath.metrics.seeds` summarises a metric over training seeds (mean ± sd).

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
    class_accuracy,
    feature_frechet_distance,
    feature_precision_recall,
    fit_feature_extractor,
    per_class_frechet_distance,
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
from probpath.metrics.registry import METRICS, MetricInputs, MetricSpec, get_metric
from probpath.metrics.shipped import digits_extractor, extractor_for
from probpath.metrics.sliced import sliced_wasserstein, wasserstein_1d

__all__ = [
    "METRICS",
    "FactorCLSResult",
    "FeatureExtractor",
    "MetricInputs",
    "MetricSpec",
    "NLLResult",
    "PrecisionRecall",
    "bits_per_dim",
    "class_accuracy",
    "digits_extractor",
    "extractor_for",
    "get_metric",
    "per_class_frechet_distance",
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
