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
    seed: int,
    quick: bool = False,
    compact: Sequence[str] = (),
    model_size: str = "auto",
    classifier: FeatureClassifier | None = None,
    floor: bool = False,
) -> list[str]:
    """The footnotes of a comparison's table: the budget, the data space, the NLL, each
    distance ([a]-[c]), the feature classifier ([d], when used) and the noise floor ([e]).

    Args:
        space: the data space of the comparison.
        bandwidth: the MMD kernel's bandwidth.
        steps, time_budget: the training budget given; ``base``: the ``--quick`` share.
        n_test, n_nll: held-out points scored, and those with an NLL.
        seed: the comparison's seed.
        quick, compact, model_size: the sizes the models were built in.
        classifier: the feature classifier of ``FD features`` (``None``: not used).
        floor: whether the table has a noise-floor row.
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
            "models flattened); all scores are computed in the original space, flattened."
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
        f"[a] unbiased MMD² with the Gaussian kernel exp(-|x-y|²/(2h²)), h = {bandwidth:.4g} "
        f"(median pairwise distance of the held-out data, fixed for all models); "
        f"{n_test} samples vs {n_test} held-out points."
    )
    notes.append(
        "[b] sliced Wasserstein-2 (random projections, seeded, the same for every model). "
        "[c] energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'|."
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
        how = " (loaded from the cache)" if classifier.cached else ""
        notes.append(
            "[d] Fréchet distance between Gaussian fits of the penultimate features of a "
            f"digit classifier trained on the training split ({classifier.steps} steps{how}, "
            f"seed {seed}): the FID recipe with a domain classifier instead of Inception "
            f"(metrics.features){snapped if classifier.extractor.grid else ''}. Pixel-space "
            "distances compare mostly means and covariances, which a fitted Gaussian matches."
        )
    if floor:
        optimistic = (
            " The FD-features floor is optimistic: the feature classifier was trained on "
            "those training points."
            if classifier is not None
            else ""
        )
        notes.append(
            f"[e] noise floor: the same distances between {n_test} training points (an "
            "independent draw of the data) and the held-out points — what a perfect model "
            f"would score at this sample size.{optimistic}"
        )
    return notes
