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

__all__ = [
    "METRICS",
    "HeldOutNLL",
    "evaluate_model",
    "evaluation_data",
    "nll_of",
    "sample_metrics",
]

#: Metric names understood by :func:`evaluate_model` (and ``probpath evaluate --metrics``).
METRICS = ("nll", "mmd", "swd", "energy", "fd")
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
    if space.bin_width is not None:
        from probpath.metrics import bits_per_dim

        value = bits_per_dim(log_p, space.dim, bin_width=space.bin_width)
    else:
        value = -log_p / space.dim
    value = float(torch.as_tensor(value, dtype=torch.float64).mean())
    return HeldOutNLL(value, unit, kind)


def sample_metrics(
    samples: torch.Tensor,
    reference: torch.Tensor,
    *,
    bandwidth: float,
    seed: int = 0,
    which: Sequence[str] = ("mmd", "swd", "energy"),
    extractor=None,
) -> dict[str, float]:
    """Two-sample distances between model samples and held-out data (both flattened).

    ``mmd``: unbiased MMD² with a Gaussian kernel of the given ``bandwidth``; ``swd``: sliced
    Wasserstein-2 (seeded projections, the same for every model); ``energy``: energy
    distance; ``fd``: Fréchet distance between Gaussian fits; ``fd_features``: the same in
    the features of ``extractor`` (a :class:`~probpath.metrics.FeatureExtractor`, the FID
    recipe with a classifier of the data set).
    """
    from probpath import metrics

    a = samples.reshape(len(samples), -1).double().cpu()
    b = reference.reshape(len(reference), -1).double().cpu()
    out: dict[str, float] = {}
    if not torch.isfinite(a).all():
        return {k: float("nan") for k in which}
    for name in which:
        if name == "mmd":
            v = metrics.mmd(a, b, bandwidth=bandwidth)
        elif name == "swd":
            v = metrics.sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(seed))
        elif name == "energy":
            v = metrics.energy_distance(a, b)
        elif name == "fd":
            v = metrics.frechet_distance(a, b)
        elif name == "fd_features":
            if extractor is None:
                raise ValueError("fd_features needs a feature extractor (labelled data)")
            v = metrics.feature_frechet_distance(a, b, extractor)
        else:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        out[name] = float(v)
    return out


def evaluate_model(
    model,
    space: DataSpace,
    test: Dataset,
    *,
    metrics: Sequence[str] = METRICS,
    n: int | None = None,
    seed: int = 0,
    sample_options: dict[str, Any] | None = None,
    progress: str = "off",
) -> dict[str, Any]:
    """Score a fitted model on held-out ``test`` data (original space).

    Returns a dict with the requested metrics (``nll`` as an :class:`HeldOutNLL` dict, the
    distances as floats), ``n`` and the MMD ``bandwidth``. Discrete data is dequantised once
    (seeded) and every score is computed against that draw. ``progress`` announces the NLL
    and sampling phases on stderr (:func:`probpath.training.progress.phase`).
    """
    from probpath.training.progress import phase

    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {', '.join(METRICS)}")
    n = len(test) if n is None else min(int(n), len(test))
    x = dequantize_held_out(test.x[:n].double(), space, seed)
    y = None if test.y is None else test.y[:n]
    conditional = is_conditional(model)
    result: dict[str, Any] = {"n": n}
    if "nll" in metrics:
        with phase(f"NLL of {n} points", mode=progress):
            result["nll"] = asdict(nll_of(model, x, space, cond=y if conditional else None))
    distances = [m for m in metrics if m != "nll"]
    if distances:
        with phase(f"{n} samples", mode=progress):
            samples, _ = draw_samples(
                model, n, cond=y if conditional else None, seed=seed, **(sample_options or {})
            )
        samples = space.to_data(samples.double().cpu())
        bw = median_bandwidth(x)
        result["bandwidth"] = bw
        result.update(sample_metrics(samples, x, bandwidth=bw, seed=seed, which=distances))
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
