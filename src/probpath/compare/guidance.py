"""``compare --guidance-sweep MODEL``: FD features and class accuracy of one conditional
model's class-balanced samples against the classifier-free guidance weight ``w`` (the
fidelity / diversity trade-off of Ho & Salimans 2022, Fig. 1; survey Table 3's "N×2" rows).

Larger ``w`` makes samples easier to classify (class accuracy up) and, past a point, less
diverse (FD up): the figure shows where that turn comes for the trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probpath.compare.evaluation import ConditionalPlan, sample_metrics
from probpath.compare.fitting import draw_samples, sampling_nfe_text

__all__ = ["SWEEP_WEIGHTS", "guidance_figure", "guidance_sweep"]

#: The guidance weights of the sweep (0 = plain conditional sampling).
SWEEP_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)


def guidance_sweep(
    model,
    space,
    job,
    options: dict[str, Any],
    labels: ConditionalPlan,
    weights: tuple[float, ...] = SWEEP_WEIGHTS,
) -> list[dict[str, Any]]:
    """Sample ``model`` for ``labels.sample_cond`` at each weight and score the samples.

    Args:
        model: a conditional path model (fitted).
        space: its :class:`~probpath.compare.space.DataSpace`.
        job: the comparison's shared state (held-out reference and labels, extractor, seed).
        options: the sampler options compare used for the row (same sampler and steps).
        labels: the row's class-balanced labels.
        weights: guidance weights.

    Returns:
        One ``{"guidance", "nfe", "fd_features", "class_accuracy"}`` dict per weight (the
        same seed at every weight, so the differences are the weight's).
    """
    out = []
    which = ("fd_features", "class_accuracy") if job.extractor is not None else ("swd",)
    for w in weights:
        samples, _ = draw_samples(
            model, len(labels.sample_cond), cond=labels.sample_cond, seed=job.seed + 2,
            guidance=float(w), **options,
        )  # fmt: skip
        samples = space.to_data(samples.double().cpu())
        scores = sample_metrics(
            samples, job.reference, bandwidth=job.bandwidth, seed=job.split_seed, which=which,
            extractor=job.extractor, sample_labels=labels.sample_cond,
            reference_labels=job.test.y,
        )  # fmt: skip
        nfe = sampling_nfe_text(model)
        out.append({"guidance": float(w), "nfe": nfe, **scores})
    return out


def guidance_figure(sweep: list[dict[str, Any]], path: str | Path, model_name: str) -> Path:
    """``fd_vs_guidance.png``: FD features (left axis) and class accuracy (right axis)
    against the guidance weight."""
    from matplotlib.figure import Figure

    from probpath.plotting import save_figure

    w = [r["guidance"] for r in sweep]
    fig = Figure(figsize=(5.0, 3.4), layout="constrained")
    ax = fig.subplots()
    key = "fd_features" if "fd_features" in sweep[0] else "swd"
    ax.plot(w, [r[key] for r in sweep], "o-", color="C0")
    ax.set_xlabel("guidance weight w")
    ax.set_ylabel("FD features ↓" if key == "fd_features" else "SW₂ ↓", color="C0")
    if "class_accuracy" in sweep[0]:
        right = ax.twinx()
        right.plot(w, [r["class_accuracy"] for r in sweep], "s--", color="C1")
        right.set_ylabel("class accuracy ↑", color="C1")
        right.set_ylim(0.0, 1.0)
    ax.set_title(f"{model_name}: classifier-free guidance")
    return save_figure(fig, path)
