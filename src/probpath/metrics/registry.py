"""One registry of the metrics that ``evaluate``, ``compare``, ``survey``, the tables and the
CLI help read: a new metric is one :class:`MetricSpec` in :data:`METRICS`.

Every metric is called the same way, ``spec.fn(inputs) -> float``, with a
:class:`MetricInputs` holding what any of them may need (samples, held-out reference, labels,
log-densities, the feature extractor, the MMD bandwidth); ``needs_labels`` /
``needs_features`` / ``needs_density`` say which parts must be present, and
:func:`available` picks the metrics a given setting can compute.

Example:
    >>> from probpath.metrics.registry import METRICS, MetricInputs
    >>> a, b = torch.randn(200, 2), torch.randn(200, 2)
    >>> v = METRICS["energy"].fn(MetricInputs(samples=a, reference=b))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

__all__ = ["METRICS", "MetricInputs", "MetricSpec", "available", "get_metric", "header"]


@dataclass(frozen=True)
class MetricInputs:
    """What a metric may read; the metric's spec says which fields it needs.

    Attributes:
        samples: ``(N, *event)`` model samples in the data's original space.
        reference: ``(M, *event)`` held-out data, same space.
        sample_labels: ``(N,)`` classes the samples were drawn for (conditional models).
        reference_labels: ``(M,)`` classes of the held-out data.
        log_prob: ``(K,)`` log-densities of held-out points in the original space, nats.
        dim: values per sample (for per-dimension likelihoods).
        bin_width: pixel bin width of quantised data (NLL in bits/dim), ``None`` otherwise.
        bandwidth: Gaussian-kernel bandwidth of MMD (``None``: median heuristic of
            ``reference``).
        seed: seed of randomised metrics (the projections of sliced Wasserstein).
        extractor: a :class:`~probpath.metrics.FeatureExtractor` (a classifier of the data).
    """

    samples: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    sample_labels: torch.Tensor | None = None
    reference_labels: torch.Tensor | None = None
    log_prob: torch.Tensor | None = None
    dim: int | None = None
    bin_width: float | None = None
    bandwidth: float | None = None
    seed: int = 0
    extractor: object | None = None


@dataclass(frozen=True)
class MetricSpec:
    """One metric.

    Attributes:
        name: the key (``--metrics`` choice, table.json / CSV field, ``CompareRow`` field).
        fn: ``fn(inputs: MetricInputs) -> float``.
        higher_is_better: the direction (the table shows ↑ or ↓).
        unit: the unit shown in the header ("" when unitless; "per-dim" for the NLL, whose
            unit, bits/dim or nats/dim, depends on the data).
        needs_labels: needs labelled reference data (and sample labels for per-class ones).
        needs_features: needs a feature extractor (a classifier of the data set).
        needs_density: needs the model's log-density of held-out points, not samples.
        description: one sentence: what it computes (the table's footnote, the CLI help).
        label: the short column header, e.g. "MMD²".
        in_compare: whether ``compare`` reports it.
        per_class: compares samples drawn per class (needs ``sample_labels``: conditional
            models only).
    """

    name: str
    fn: Callable[[MetricInputs], float]
    higher_is_better: bool
    unit: str
    needs_labels: bool
    needs_features: bool
    needs_density: bool
    description: str
    label: str
    in_compare: bool = True
    per_class: bool = False

    @property
    def arrow(self) -> str:
        """↑ (higher is better) or ↓."""
        return "↑" if self.higher_is_better else "↓"


def header(spec: MetricSpec, unit: str | None = None) -> str:
    """The column header: label, unit (``unit`` overrides the spec's) and arrow."""
    u = spec.unit if unit is None else unit
    return f"{spec.label} {u} {spec.arrow}" if u else f"{spec.label} {spec.arrow}"


def _flat(x: torch.Tensor | None, what: str, name: str) -> torch.Tensor:
    if x is None:
        raise ValueError(f"metric {name!r} needs {what}; pass it in MetricInputs")
    return x.reshape(len(x), -1).double().cpu()


def _pair(inputs: MetricInputs, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _flat(inputs.samples, "samples", name), _flat(inputs.reference, "reference", name)


def _extractor(inputs: MetricInputs, name: str):
    if inputs.extractor is None:
        raise ValueError(
            f"metric {name!r} needs a feature extractor (labelled images: "
            "metrics.digits_extractor() or metrics.fit_feature_extractor)"
        )
    return inputs.extractor


def _nll(inputs: MetricInputs) -> float:
    from probpath.metrics.likelihood import bits_per_dim

    if inputs.log_prob is None or inputs.dim is None:
        raise ValueError("metric 'nll' needs log_prob and dim in MetricInputs")
    log_p = inputs.log_prob.double()
    if inputs.bin_width is not None:
        value = bits_per_dim(log_p, inputs.dim, bin_width=inputs.bin_width)
    else:
        value = -log_p / inputs.dim
    return float(torch.as_tensor(value, dtype=torch.float64).mean())


def _mmd(inputs: MetricInputs) -> float:
    from probpath.metrics.mmd import median_bandwidth, mmd

    a, b = _pair(inputs, "mmd")
    h = median_bandwidth(b) if inputs.bandwidth is None else inputs.bandwidth
    return float(mmd(a, b, bandwidth=h))


def _swd(inputs: MetricInputs) -> float:
    from probpath.metrics.sliced import sliced_wasserstein

    a, b = _pair(inputs, "swd")
    g = torch.Generator().manual_seed(inputs.seed)
    return float(sliced_wasserstein(a, b, generator=g))


def _energy(inputs: MetricInputs) -> float:
    from probpath.metrics.energy import energy_distance

    return float(energy_distance(*_pair(inputs, "energy")))


def _fd(inputs: MetricInputs) -> float:
    from probpath.metrics.frechet import frechet_distance

    return float(frechet_distance(*_pair(inputs, "fd")))


def _fd_features(inputs: MetricInputs) -> float:
    from probpath.metrics.features import feature_frechet_distance

    a, b = _pair(inputs, "fd_features")
    return float(feature_frechet_distance(a, b, _extractor(inputs, "fd_features")))


def _precision_recall(inputs: MetricInputs, name: str):
    from probpath.metrics.features import feature_precision_recall

    a, b = _pair(inputs, name)
    return feature_precision_recall(b, a, _extractor(inputs, name))


def _precision(inputs: MetricInputs) -> float:
    return float(_precision_recall(inputs, "precision").precision)


def _recall(inputs: MetricInputs) -> float:
    return float(_precision_recall(inputs, "recall").recall)


def _labels(x: torch.Tensor | None, what: str, name: str) -> torch.Tensor:
    if x is None:
        raise ValueError(f"metric {name!r} needs {what} (class-conditional samples)")
    return x.reshape(-1).long().cpu()


def _class_accuracy(inputs: MetricInputs) -> float:
    from probpath.metrics.features import class_accuracy

    a = _flat(inputs.samples, "samples", "class_accuracy")
    y = _labels(inputs.sample_labels, "sample_labels", "class_accuracy")
    return class_accuracy(a, y, _extractor(inputs, "class_accuracy"))


def _fd_per_class(inputs: MetricInputs) -> float:
    from probpath.metrics.features import per_class_frechet_distance

    a, b = _pair(inputs, "fd_per_class")
    ya = _labels(inputs.sample_labels, "sample_labels", "fd_per_class")
    yb = _labels(inputs.reference_labels, "reference_labels", "fd_per_class")
    return per_class_frechet_distance(a, ya, b, yb, _extractor(inputs, "fd_per_class"))


def _spec(name: str, fn, label: str, description: str, **flags) -> MetricSpec:
    """A spec with the common defaults: lower is better, unitless, needs only samples."""
    defaults = dict(higher_is_better=False, unit="", needs_labels=False, needs_features=False,
                    needs_density=False)  # fmt: skip
    return MetricSpec(name=name, fn=fn, label=label, description=description,
                      **{**defaults, **flags})  # fmt: skip


_FEATURES = {"needs_labels": True, "needs_features": True}
_SPECS = (
    _spec("nll", _nll, "NLL", "held-out negative log-likelihood per dimension: bits/dim for "
          "discrete data (uniform dequantisation, bin width of one level), nats/dim otherwise",
          unit="per-dim", needs_density=True),
    _spec("mmd", _mmd, "MMD²", "unbiased MMD² with the Gaussian kernel exp(-|x-y|²/(2h²)), h "
          "the median pairwise distance of the held-out data (fixed for all models)"),
    _spec("swd", _swd, "SW₂", "sliced Wasserstein-2 over random projections (seeded, the same "
          "for every model)"),
    _spec("energy", _energy, "energy", "energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'|"),
    _spec("fd", _fd, "FD pixels", "Fréchet distance between Gaussian fits in pixel space "
          "(compares means and covariances only, which a fitted Gaussian matches: a "
          "diagnostic)", in_compare=False),
    _spec("fd_features", _fd_features, "FD features", "Fréchet distance between Gaussian fits "
          "of the penultimate features of a classifier of the data set (the FID recipe with a "
          "domain classifier instead of Inception)", **_FEATURES),
    _spec("precision", _precision, "precision", "improved precision (Kynkäänniemi et al. "
          "2019, k = 3) in the classifier's features: share of samples inside the held-out "
          "data's k-NN balls", higher_is_better=True, in_compare=False, **_FEATURES),
    _spec("recall", _recall, "recall", "improved recall (k = 3) in the classifier's "
          "features: share of held-out points inside the samples' k-NN balls",
          higher_is_better=True, in_compare=False, **_FEATURES),
    _spec("class_accuracy", _class_accuracy, "class acc.", "share of class-conditional "
          "samples that the data set's classifier assigns to the class they were drawn for",
          higher_is_better=True, per_class=True, **_FEATURES),
    _spec("fd_per_class", _fd_per_class, "FD per class", "Fréchet distance in the "
          "classifier's features between the samples drawn for class c and the held-out "
          "points of class c, averaged over the classes", per_class=True, **_FEATURES),
)  # fmt: skip

#: Every metric by name, in table order.
METRICS: dict[str, MetricSpec] = {s.name: s for s in _SPECS}


def get_metric(name: str) -> MetricSpec:
    """The spec of ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}") from None


def available(
    names: Iterable[str] | None = None,
    *,
    labels: bool,
    features: bool,
    density: bool = True,
    conditional: bool = False,
) -> list[str]:
    """The metrics (of ``names``, default all) computable with what is at hand.

    Args:
        labels: labelled held-out data exists.
        features: a feature extractor exists.
        density: the log-density route is wanted (``False`` leaves out the NLL).
        conditional: the samples were drawn per class (per-class metrics need it).
    """
    out = []
    for name in METRICS if names is None else names:
        s = get_metric(name)
        if (s.needs_labels and not labels) or (s.needs_features and not features):
            continue
        if s.needs_density and not density:
            continue
        if s.per_class and not conditional:
            continue
        out.append(name)
    return out
