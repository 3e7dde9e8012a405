"""Feature-space metrics with a domain classifier: the FID recipe for small data sets.

FID (Heusel et al., 2017; survey §5) is the Fréchet distance between Gaussian fits of
*network features* of real and generated images, not of pixels. In pixel space the
Fréchet distance only compares means and covariances, which a single fitted Gaussian
matches by construction; features of a classifier trained to tell the classes apart
respond to what the samples look like (is it a recognisable digit?). Where Inception is
out of reach — 8×8 digits, offline machines — the field uses a small classifier trained on
the data set itself ("MNIST FID" with a LeNet); :func:`fit_feature_extractor` builds that
deterministically from labelled data, and :func:`feature_frechet_distance` /
:func:`feature_precision_recall` apply the usual formulas to its penultimate activations.

For quantised data (pixel levels) give the extractor the grid: it then snaps every input to
the nearest level before computing features, as FID judges generated images saved as 8-bit
files. Sub-level noise (dequantisation, or a model's continuous output) is invisible to it,
and real and generated data are judged on the same footing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probpath.core.validation import check_positive_int, check_tensor
from probpath.metrics._common import flatten_pair, flatten_samples
from probpath.metrics.frechet import frechet_distance
from probpath.metrics.likelihood import quantize
from probpath.metrics.precision_recall import precision_recall
from probpath.nn.mlp import MLP

__all__ = [
    "FeatureExtractor",
    "class_accuracy",
    "feature_frechet_distance",
    "feature_precision_recall",
    "fit_feature_extractor",
    "per_class_frechet_distance",
]


class FeatureExtractor(nn.Module):
    """An MLP classifier on standardised, flattened inputs; its last hidden layer gives the
    features.

    Args:
        mean, std: ``(D,)`` input standardisation (from the training data).
        num_classes: number of classes of the classification head.
        hidden: hidden widths; the features have ``hidden[-1]`` values.
        n_levels, value_range: the data's quantisation grid (``None``: continuous data);
            inputs are snapped to it first (:func:`~probpath.metrics.quantize`).

    Shapes: ``features`` maps ``(N, *event)`` with ``D`` values per sample to
    ``(N, hidden[-1])``; ``forward`` returns ``(N, num_classes)`` logits.
    """

    def __init__(
        self,
        mean: torch.Tensor,
        std: torch.Tensor,
        num_classes: int,
        hidden: Sequence[int] = (128, 64),
        n_levels: int | None = None,
        value_range: tuple[float, float] | None = None,
    ):
        super().__init__()
        if (n_levels is None) != (value_range is None):
            raise ValueError("pass both n_levels and value_range (a quantisation grid) or neither")
        self.grid = None if n_levels is None else (n_levels, tuple(value_range))
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.body = MLP(mean.numel(), hidden[-1], tuple(hidden[:-1]), act="relu")
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden[-1], num_classes))

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Snapped to the grid (if any) and standardised: ``(N, D)`` float32."""
        if self.grid is not None:
            x = quantize(x, *self.grid)
        return (x.to(self.mean) - self.mean) / self.std

    def features(self, x) -> torch.Tensor:
        """Penultimate activations (after the ReLU), float64 ``(N, hidden[-1])``."""
        x = flatten_samples(x, "x")
        if x.shape[1] != self.mean.numel():
            raise ValueError(
                f"x has {x.shape[1]} values per sample; this extractor was fitted on "
                f"{self.mean.numel()}"
            )
        with torch.no_grad():
            return torch.relu(self.body(self._inputs(x))).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)`` of inputs ``(N, D)``."""
        return self.head(self.body(self._inputs(x)))


def fit_feature_extractor(
    x,
    y,
    *,
    hidden: Sequence[int] = (128, 64),
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    n_levels: int | None = None,
    value_range: tuple[float, float] | None = None,
) -> FeatureExtractor:
    """Train the classifier that defines the feature space (cross-entropy, AdamW, float32).

    Deterministic for a given ``seed`` (its own generator for initialisation and batches).
    Fit it on the *training* split and use it to compare samples with held-out data, as
    every model is then judged in the same, fixed feature space.

    Args:
        x: ``(N, *event)`` labelled data (any scale: it is standardised; constant inputs are
            left centred).
        y: ``(N,)`` integer labels ``0 .. C-1``.
        hidden, steps, batch_size, lr, weight_decay: classifier and optimiser settings.
        seed: seed of initialisation and batch order.
        n_levels, value_range: the quantisation grid of discrete data, e.g. ``17, (0, 16)``
            for the digits' pixels: the classifier trains on, and later judges, inputs
            snapped to it (dequantised or generated data included).

    Returns:
        A :class:`FeatureExtractor` in eval mode.
    """
    x = flatten_samples(x, "x", min_n=2).float()
    if n_levels is not None and value_range is not None:
        x = quantize(x, n_levels, value_range)
    y = check_tensor(y, "y", dtype=torch.long)
    if y.shape != (len(x),):
        raise ValueError(f"y must have shape ({len(x)},) to match x, got {tuple(y.shape)}")
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    if int(y.min()) < 0:
        raise ValueError("y must hold class indices 0 .. C-1 (no negative labels)")
    g = torch.Generator().manual_seed(seed)
    std = x.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureExtractor(x.mean(0), std, int(y.max()) + 1, hidden, n_levels, value_range)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=g)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def feature_frechet_distance(x, y, extractor: FeatureExtractor) -> float:
    """Fréchet distance between Gaussian fits of ``extractor`` features of ``x`` and ``y``
    (the FID formula in a domain classifier's feature space).

    Args:
        x, y: ``(m, *event)``, ``(n, *event)`` samples in the extractor's input units.
        extractor: from :func:`fit_feature_extractor`.

    Returns:
        A Python float (squared distance, as FID reports it).
    """
    x, y = flatten_pair(x, y, min_n=2)
    return frechet_distance(extractor.features(x), extractor.features(y))


def feature_precision_recall(real, fake, extractor: FeatureExtractor, *, k: int = 3):
    """Improved precision / recall (Kynkäänniemi et al., 2019) in the feature space, as the
    paper computes them (it uses VGG features; here the domain classifier's).

    Returns:
        :class:`~probpath.metrics.PrecisionRecall` of Python floats.
    """
    real, fake = flatten_pair(real, fake, min_n=k + 1)
    return precision_recall(extractor.features(real), extractor.features(fake), k=k)


def class_accuracy(x, labels, extractor: FeatureExtractor) -> float:
    """Share of samples ``x`` that the extractor's classifier assigns to ``labels`` (the
    classes they were drawn for): how recognisable class-conditional samples are.

    Args:
        x: ``(N, *event)`` samples in the extractor's input units.
        labels: ``(N,)`` integer classes.
        extractor: a classifier of the data set (:func:`fit_feature_extractor`).

    Returns:
        A Python float in [0, 1].
    """
    x = flatten_samples(x, "x")
    labels = check_tensor(labels, "labels", dtype=torch.long).reshape(-1)
    if len(labels) != len(x):
        raise ValueError(f"labels must have one class per sample ({len(x)}), got {len(labels)}")
    with torch.no_grad():
        predicted = extractor(x).argmax(1).cpu()
    return float((predicted == labels.cpu()).double().mean())


def per_class_frechet_distance(
    x, x_labels, y, y_labels, extractor: FeatureExtractor, *, min_count: int = 2
) -> float:
    """Mean over classes ``c`` of the feature Fréchet distance between the samples drawn for
    ``c`` and the held-out points of class ``c`` (how well each conditional is matched, not
    only the mixture).

    Args:
        x, x_labels: ``(m, *event)`` samples and the ``(m,)`` classes they were drawn for.
        y, y_labels: ``(n, *event)`` held-out data and its ``(n,)`` classes.
        extractor: from :func:`fit_feature_extractor`.
        min_count: classes with fewer points on either side are left out (a Gaussian fit
            needs at least two).

    Returns:
        A Python float (``nan`` when no class has ``min_count`` points on both sides).
    """
    x, y = flatten_pair(x, y, min_n=2)
    x_labels = check_tensor(x_labels, "x_labels", dtype=torch.long).reshape(-1).cpu()
    y_labels = check_tensor(y_labels, "y_labels", dtype=torch.long).reshape(-1).cpu()
    if len(x_labels) != len(x) or len(y_labels) != len(y):
        raise ValueError("x_labels / y_labels must have one class per sample of x / y")
    fx, fy = extractor.features(x).cpu(), extractor.features(y).cpu()
    values = []
    for c in torch.unique(y_labels).tolist():
        a, b = fx[x_labels == c], fy[y_labels == c]
        if len(a) >= min_count and len(b) >= min_count:
            values.append(frechet_distance(a, b))
    return float(sum(values) / len(values)) if values else float("nan")
