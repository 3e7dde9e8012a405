"""Scoring a fitted model on held-out data in its original space: NLL (bits/dim for discrete
data) and the two-sample distances."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from probpath.compare.fitting import draw_samples, model_device_dtype
from probpath.compare.space import DataSpace, dequantize_held_out
from probpath.core.model import is_conditional
from probpath.data.dataset import Dataset
from probpath.metrics import median_bandwidth
from probpath.metrics.registry import METRICS, MetricInputs, available, get_metric

__all__ = [
    "ConditionalPlan",
    "DEFAULT_METRICS",
    "METRICS",
    "HeldOutNLL",
    "evaluate_model",
    "evaluation_data",
    "class_balanced_labels",
    "compare_sample_metrics",
    "conditional_note",
    "conditional_plan",
    "nll_of",
    "sample_metrics",
    "score_row",
]

#: What :func:`evaluate_model` computes when not told: every metric that needs no labels.
DEFAULT_METRICS = tuple(m for m, s in METRICS.items() if not s.needs_labels)
_NLL_CHUNK = 256


@dataclass(frozen=True)
class HeldOutNLL:
    """Held-out negative log-likelihood per dimension.

    Attributes:
        value: the mean NLL per dimension (``None`` when the model has none).
        unit: "bits/dim" (discrete data, dequantised) or "nats/dim".
        kind: "exact", "bound" (an upper bound on the NLL from a lower bound on log p)
            or "none".
        note: why there is no value, e.g. "implicit model".
    """

    value: float | None
    unit: str
    kind: str
    note: str = ""

    def label(self) -> str:
        """The table cell, e.g. ``"1.234 (exact)"`` or ``"none — implicit model"``."""
        if self.value is None:
            return f"none — {self.note}" if self.note else "none"
        return f"{self.value:.3f} ({self.kind})"


def nll_of(
    model,
    x: torch.Tensor,
    space: DataSpace,
    *,
    cond: torch.Tensor | None = None,
) -> HeldOutNLL:
    """Mean held-out NLL per dimension of ``x`` (original space, already dequantised).

    ``log p_x(x) = log p_model(space.to_model(x)) + space.log_abs_det``; discrete data is
    reported in bits/dim with the bin width of one level (``metrics.bits_per_dim``).
    """
    unit = "bits/dim" if space.bin_width is not None else "nats/dim"
    kind = model.capabilities.likelihood_kind
    if kind == "none":
        route = model.capabilities.route
        note = "implicit model" if route == "adversarial" else "no likelihood"
        return HeldOutNLL(None, unit, kind, note)
    device, dtype = model_device_dtype(model)
    y = space.to_model(x).to(device=device, dtype=dtype)
    parts = []
    try:
        with torch.no_grad():
            for i in range(0, len(y), _NLL_CHUNK):
                c = None if cond is None else cond[i : i + _NLL_CHUNK].to(device)
                chunk = y[i : i + _NLL_CHUNK]
                lp = model.log_prob(chunk) if c is None else model.log_prob(chunk, c)
                parts.append(lp.detach().double().cpu())
    except NotImplementedError as exc:
        return HeldOutNLL(None, unit, "none", str(exc).split("\n")[0][:80])
    log_p = torch.cat(parts) + space.log_abs_det
    if not torch.isfinite(log_p).all():
        return HeldOutNLL(None, unit, kind, "non-finite log-density")
    inputs = MetricInputs(log_prob=log_p, dim=space.dim, bin_width=space.bin_width)
    return HeldOutNLL(METRICS["nll"].fn(inputs), unit, kind)


def sample_metrics(
    samples: torch.Tensor,
    reference: torch.Tensor,
    *,
    bandwidth: float,
    seed: int = 0,
    which: Sequence[str] = ("mmd", "swd", "energy"),
    extractor=None,
    sample_labels: torch.Tensor | None = None,
    reference_labels: torch.Tensor | None = None,
) -> dict[str, float]:
    """The sample metrics ``which`` (names of :data:`probpath.metrics.registry.METRICS`)
    between model samples and held-out data, both in the data's original space.

    Args:
        samples, reference: ``(N, *event)`` and ``(M, *event)``.
        bandwidth: MMD kernel bandwidth (fixed for all models of a comparison).
        seed: seed of the sliced-Wasserstein projections (the same for every model).
        which: metric names; the NLL is not a sample metric (:func:`nll_of`).
        extractor: a :class:`~probpath.metrics.FeatureExtractor` for the feature metrics.
        sample_labels, reference_labels: ``(N,)`` classes the samples were drawn for and
            ``(M,)`` classes of the reference, for the per-class metrics.

    Returns:
        ``{name: float}``; all ``nan`` when a sample is not finite.
    """
    specs = [get_metric(name) for name in which]
    density = [s.name for s in specs if s.needs_density]
    if density:
        raise ValueError(f"{density} need a model's log-density, not samples; use nll_of")
    a = samples.reshape(len(samples), -1).double().cpu()
    b = reference.reshape(len(reference), -1).double().cpu()
    if not torch.isfinite(a).all():
        return {s.name: float("nan") for s in specs}
    inputs = MetricInputs(
        samples=a, reference=b, sample_labels=sample_labels, reference_labels=reference_labels,
        bandwidth=bandwidth, seed=seed, extractor=extractor,
    )  # fmt: skip
    return {s.name: float(s.fn(inputs)) for s in specs}


def class_balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """``(n,)`` labels ``0, 1, ..., C-1, 0, 1, ...``: every class ``n // C`` or one more
    times (class-balanced conditional samples)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return torch.arange(n) % num_classes


@dataclass(frozen=True)
class ConditionalPlan:
    """How ``compare`` samples and scores one model with respect to labels.

    Attributes:
        sample_cond: ``(n,)`` classes the samples are drawn for (class-balanced), ``None`` for
            an unconditional model.
        nll_cond: ``(n,)`` held-out labels for the conditional NLL, ``None`` likewise.
        options: sampling options: ``{"guidance": w}`` for a guided path model.
        guidance: the weight used (``None``: the model's default, no guidance).
    """

    sample_cond: torch.Tensor | None
    nll_cond: torch.Tensor | None
    options: dict[str, Any]
    guidance: float | None


def conditional_plan(model, test: Dataset, guidance: float | None = None) -> ConditionalPlan:
    """Class-balanced labels and the guidance weight for a conditional ``model`` (the
    classifier-free guidance weight reaches path models only; others sample ``p(x | c)``)."""
    from probpath.compare.runmodel import is_path_model

    if not is_conditional(model) or test.y is None:
        return ConditionalPlan(None, None, {}, None)
    classes = max(int(test.num_classes), int(test.y.max()) + 1)
    labels = class_balanced_labels(len(test), classes)
    guided = guidance is not None and is_path_model(model)
    options = {"guidance": float(guidance)} if guided else {}
    return ConditionalPlan(labels, test.y, options, float(guidance) if guided else None)


def conditional_note(guidance: float | None, sweep: list[dict] | None) -> str:
    """The table note of a conditional comparison."""
    w = "the model's default (none)" if guidance is None else f"w = {guidance:g}"
    note = (
        "Conditional: models that accept labels were fitted with them and sample "
        f"class-balanced (classes 0, 1, ... in turn); classifier-free guidance {w}, NFE "
        "'N×2' = N steps of two network passes."
    )
    if sweep:
        pairs = ", ".join(
            f"w = {r['guidance']:g}: "
            + " / ".join(f"{k} {r[k]:.4g}" for k in r if k not in ("guidance", "nfe"))
            for r in sweep
        )
        note += f" Guidance sweep (fd_vs_guidance.png): {pairs}."
    return note


def compare_sample_metrics(*, features: bool, conditional: bool) -> tuple[str, ...]:
    """The sample metrics a ``compare`` row gets (registry order, ``in_compare`` only)."""
    names = [n for n, s in METRICS.items() if s.in_compare and not s.needs_density]
    return tuple(available(names, labels=features, features=features, conditional=conditional))


def score_row(
    row,
    samples: torch.Tensor,
    reference: torch.Tensor,
    reference_labels: torch.Tensor | None,
    plan: ConditionalPlan,
    *,
    bandwidth: float,
    seed: int,
    extractor=None,
) -> None:
    """Compute the row's sample metrics and store each under its registry name."""
    which = compare_sample_metrics(
        features=extractor is not None, conditional=plan.sample_cond is not None
    )
    scores = sample_metrics(
        samples, reference, bandwidth=bandwidth, seed=seed, which=which, extractor=extractor,
        sample_labels=plan.sample_cond, reference_labels=reference_labels,
    )  # fmt: skip
    for name, value in scores.items():
        setattr(row, name, value)
    row.conditional = plan.sample_cond is not None
    row.guidance = plan.guidance


def evaluate_model(
    model,
    space: DataSpace,
    test: Dataset,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n: int | None = None,
    seed: int = 0,
    sample_options: dict[str, Any] | None = None,
    progress: str = "off",
    extractor=None,
) -> dict[str, Any]:
    """Score a fitted model on held-out ``test`` data (original space).

    Args:
        metrics: names in :data:`~probpath.metrics.registry.METRICS`.
        extractor: the feature extractor of the feature metrics
            (:func:`probpath.metrics.extractor_for`).

    Returns a dict with the requested metrics (``nll`` as an :class:`HeldOutNLL` dict, the
    others as floats), ``n`` and the MMD ``bandwidth``. Discrete data is dequantised once
    (seeded) and every score is computed against that draw; a conditional model samples for
    the held-out labels. ``progress`` announces the NLL and sampling phases on stderr
    (:func:`probpath.training.progress.phase`).

    Raises:
        ValueError: an unknown metric, or one whose needs (labels, extractor, a conditional
            model) are not met.
    """
    from probpath.training.progress import phase

    specs = [get_metric(m) for m in metrics]
    conditional = is_conditional(model)
    possible = available(
        metrics, labels=test.y is not None, features=extractor is not None,
        conditional=conditional,
    )  # fmt: skip
    missing = [s.name for s in specs if s.name not in possible]
    if missing:
        raise ValueError(
            f"metric(s) {missing} cannot be computed here: they need labelled data, a feature "
            "extractor (labelled images) and, per class, a conditional model"
        )
    n = len(test) if n is None else min(int(n), len(test))
    x = dequantize_held_out(test.x[:n].double(), space, seed)
    y = None if test.y is None else test.y[:n]
    result: dict[str, Any] = {"n": n}
    if "nll" in metrics:
        with phase(f"NLL of {n} points", mode=progress):
            result["nll"] = asdict(nll_of(model, x, space, cond=y if conditional else None))
    distances = [s.name for s in specs if not s.needs_density]
    if distances:
        with phase(f"{n} samples", mode=progress):
            samples, _ = draw_samples(
                model, n, cond=y if conditional else None, seed=seed, **(sample_options or {})
            )
        samples = space.to_data(samples.double().cpu())
        bw = median_bandwidth(x)
        result["bandwidth"] = bw
        result.update(
            sample_metrics(
                samples,
                x,
                bandwidth=bw,
                seed=seed,
                which=distances,
                extractor=extractor,
                sample_labels=y if conditional else None,
                reference_labels=y,
            )  # fmt: skip
        )
    return result


def _same_source(a: str, b: str) -> bool:
    from pathlib import Path

    if a == b:
        return True
    return Path(a).exists() and str(Path(a).resolve()) == str(b)


def evaluation_data(
    run_data: str,
    *,
    run_n: int | None,
    run_seed: int,
    holdout: float,
    data: str | None = None,
    seed: int = 0,
) -> tuple[Dataset, str]:
    """The data ``probpath evaluate`` scores, and a sentence saying what it is.

    The run's held-out split (the share ``fit`` kept aside, drawn again with the run's seed)
    unless ``data`` names another data set; naming the run's own data also gives the held-out
    split, never the training points.

    Raises:
        ValueError: the run kept no held-out data and no other data was named.
    """
    from probpath.data import load_dataset

    if data is None or _same_source(data, run_data):
        if holdout <= 0:
            raise ValueError(
                "the run kept no held-out data (fit --holdout 0); pass --data with other data"
            )
        full = load_dataset(run_data, n=run_n, seed=run_seed)
        _, test = full.split(holdout, seed=run_seed)
        what = (
            f"the held-out {holdout:.0%} of {full.name} that fit kept aside "
            f"({len(test)} points, split seed {run_seed})"
        )
        return test, what
    test = load_dataset(data, seed=seed)
    return test, f"{test.name} as given by --data ({len(test)} points; may overlap training)"
