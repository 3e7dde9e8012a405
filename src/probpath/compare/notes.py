"""The footnotes of a comparison's table (what each column and budget means)."""

from __future__ import annotations

from collections.abc import Sequence

from probpath.compare.budget import QUICK_TRAIN_BUDGET
from probpath.compare.features import FeatureClassifier
from probpath.compare.space import DataSpace

__all__ = ["compare_notes"]


def compare_notes(
    space: DataSpace,
    bandwidth: float,
    steps: int | None,
    time_budget: float | None,
    base: float | None,
    n_test: int,
    n_nll: int,
    *,
    quick: bool = False,
    compact: Sequence[str] = (),
    model_size: str = "auto",
    classifier: FeatureClassifier | None = None,
) -> list[str]:
    """The footnotes of a comparison's table that are not a metric's own (those come from
    the metric registry, :func:`~probpath.compare.table.metric_notes`): the budget, the data
    space, the NLL, the MMD bandwidth, the compact models and the feature classifier.

    Args:
        space: the data space of the comparison.
        bandwidth: the MMD kernel's bandwidth.
        steps, time_budget: the training budget given; ``base``: the ``--quick`` share.
        n_test, n_nll: held-out points scored, and those with an NLL.
        quick, compact, model_size: the sizes the models were built in.
        classifier: the feature classifier of ``FD features`` (``None``: not used).
    """
    notes = []
    if base is not None:
        notes.append(
            f"Budget: --quick, {QUICK_TRAIN_BUDGET:.0f} s of training shared equally by the "
            f"neural models (≤ {base:.1f} s each; less if evaluation ran late), each entry's "
            "quick configuration; estimators run `fit` to convergence."
        )
    else:
        parts = []
        if steps is not None:
            parts.append(f"{steps} steps")
        if time_budget is not None:
            parts.append(f"{time_budget:g} s")
        spec = " or ".join(parts) if parts else "the Trainer's default steps"
        notes.append(f"Budget: {spec} per neural model (whichever first); estimators run `fit`.")
    if space.value_range is not None:
        notes.append(
            f"Models see the data scaled from {list(space.value_range)} to [-1, 1] (vector "
            "models flattened); path models clamp every x0 prediction to that range while "
            "sampling, as `probpath sample` does; all scores are computed in the original "
            "space, flattened."
        )
    if space.discrete:
        notes.append(
            f"Discrete data ({space.n_levels} levels): uniform dequantisation; NLL in bits/dim "
            f"with bin width {space.bin_width:g} (an upper bound on the discrete NLL), "
            "including the log-Jacobian of the scaling. Distances use the same dequantised "
            f"held-out draw. NLL on the first {n_nll} held-out points."
        )
    else:
        notes.append(f"NLL in nats/dim on the first {n_nll} held-out points.")
    notes.append(
        "NLL kind: exact = exact log-density; bound = from a lower bound on log p (ELBO), "
        "so the true NLL is lower; none = the model defines no density."
    )
    notes.append(
        f"MMD bandwidth h = {bandwidth:.4g} (median pairwise distance of the held-out data, "
        f"fixed for all models); {n_test} samples vs {n_test} held-out points."
    )
    notes.append(
        "NFE / sample: network evaluations per sample as reported by the model "
        "(`sampling_nfe`), 1 for one-step models, — when the model does not report it."
    )

    if compact and not quick:
        notes.append(
            f"Compact models: {', '.join(sorted(compact))} in their catalog entry's quick "
            f"configuration (smaller networks; model_size={model_size!r}: on a CPU image "
            "models are compact unless model_size='full')."
        )
    if classifier is not None:
        snapped = ", inputs snapped to the pixel levels as FID scores 8-bit files"
        if classifier.shipped:
            what = (
                "the shipped digits classifier (metrics/shipped_data/digits_extractor.json: "
                "trained once on the fixed split split(0.2, seed=0), the same for every run "
                "and seed)"
            )
        else:
            how = ", loaded from the cache" if classifier.cached else ""
            what = (
                f"a classifier trained on the training split ({classifier.steps} steps{how}, "
                "the fixed seed 0)"
            )
        notes.append(
            f"Feature metrics: the penultimate features of {what} — the FID recipe with a "
            f"domain classifier instead of Inception (metrics.features)"
            f"{snapped if classifier.extractor.grid else ''}."
        )
    return notes
