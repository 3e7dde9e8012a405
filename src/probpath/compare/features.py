"""The feature classifier of a comparison ("FD features"): bounded by the budget, cached.

:func:`feature_classifier` trains :func:`~probpath.metrics.fit_feature_extractor` on the
training split of labelled images: :data:`FULL_STEPS` steps, or — under a time budget —
as many as the measured cost of a step lets fit (at least :data:`MIN_STEPS`). The weights are
kept as safetensors in ``OUT/.cache/`` under a SHA-256 of the training data, the seed, the
pixel grid and the step count, so a rerun on the same data loads them instead of training.

Under a time budget the step count depends on the machine's speed (as the models' training
does); the table's notes give it. Without one, the classifier is the same on every run.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from probpath.compare.space import DataSpace
from probpath.core.serialization import CheckpointError, TensorInfo, load_tensors, save_tensors
from probpath.data.dataset import Dataset

__all__ = ["CACHE_DIR", "FULL_STEPS", "MIN_STEPS", "FeatureClassifier", "feature_classifier"]

#: Training steps of the classifier without a time budget (``fit_feature_extractor``'s).
FULL_STEPS = 2000
#: Fewest steps under a time budget (8 epochs of 8,000 images at batch 128 need 500).
MIN_STEPS = 100
#: The cache folder inside the comparison's output directory.
CACHE_DIR = ".cache"
_PROBE_STEPS = 20


@dataclass(frozen=True)
class FeatureClassifier:
    """The trained classifier and how it was had.

    Attributes:
        extractor: a :class:`~probpath.metrics.FeatureExtractor` in eval mode.
        steps: its training steps.
        cached: whether it was loaded from the cache.
        shipped: whether it is the package's fixed digits classifier
            (:mod:`probpath.metrics.shipped`).
    """

    extractor: torch.nn.Module
    steps: int
    cached: bool
    shipped: bool = False


def feature_classifier(
    train: Dataset,
    space: DataSpace,
    seed: int,
    *,
    time_budget: float | None = None,
    cache_dir: str | Path | None = None,
) -> FeatureClassifier | None:
    """The classifier whose features define ``FD features``, for labelled images only
    (``(C, H, W)`` data with at least two classes); ``None`` otherwise. For digits it is the
    shipped one (:func:`~probpath.metrics.digits_extractor`), never retrained.

    Args:
        train: the training split (original space).
        space: its data space; for quantised data the classifier judges every input snapped
            to the pixel grid (FID on saved image files).
        seed: seed of the classifier's initialisation and batches.
        time_budget: seconds the training may take (``None``: :data:`FULL_STEPS` steps).
        cache_dir: where trained weights are kept and looked up (``None``: no cache).
    """
    if train.y is None or len(space.event_shape) != 3 or int(train.y.unique().numel()) < 2:
        return None
    from probpath.metrics import FeatureExtractor, fit_feature_extractor
    from probpath.metrics.shipped import DIGITS_SETTINGS, digits_extractor, is_digits
    from probpath.runs import data_fingerprint

    if is_digits(train):  # the protocol's fixed feature space
        return FeatureClassifier(digits_extractor(), DIGITS_SETTINGS["steps"], True, True)

    grid = {}
    if space.bin_width is not None:  # quantised data
        grid = {"n_levels": space.n_levels, "value_range": tuple(space.value_range)}
    x, y = train.x.double(), train.y
    data_key = data_fingerprint(train.x, train.y)
    cache = None if cache_dir is None else Path(cache_dir)

    def fit(steps: int) -> torch.nn.Module:
        return fit_feature_extractor(x, y, seed=seed, steps=steps, **grid)

    def template() -> torch.nn.Module:  # the classifier's shapes, for checking a cached file
        dim = x[0].numel()
        return FeatureExtractor(torch.zeros(dim), torch.ones(dim), int(y.max()) + 1, **grid)

    steps = FULL_STEPS
    found = _load(cache, data_key, seed, grid, steps, template)
    if found is None and time_budget is not None:
        t0 = time.perf_counter()
        fit(_PROBE_STEPS)
        per_step = (time.perf_counter() - t0) / _PROBE_STEPS
        steps = int(min(FULL_STEPS, max(MIN_STEPS, time_budget // max(per_step, 1e-9))))
        if steps < FULL_STEPS:
            found = _load(cache, data_key, seed, grid, steps, template)
    if found is not None:
        return FeatureClassifier(found, steps, cached=True)
    extractor = fit(steps)
    if cache is not None:
        path = cache / _file_name(data_key, seed, grid, steps)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            save_tensors(path, {k: v.contiguous() for k, v in extractor.state_dict().items()})
        except OSError as exc:  # a cache that cannot be written only costs the next run time
            warnings.warn(f"could not cache the feature classifier in {cache}: {exc}", stacklevel=2)
    return FeatureClassifier(extractor, steps, cached=False)


def _file_name(data_key: str, seed: int, grid: dict, steps: int) -> str:
    spec = json.dumps({"data": data_key, "seed": seed, "grid": grid, "steps": steps})
    return f"features-{hashlib.sha256(spec.encode()).hexdigest()[:20]}.safetensors"


def _load(cache: Path | None, data_key: str, seed: int, grid: dict, steps: int, template):
    """The cached classifier, or ``None`` (no cache or no file; a file that does not match
    the template's tensors is reported and ignored)."""
    if cache is None:
        return None
    path = cache / _file_name(data_key, seed, grid, steps)
    if not path.is_file():
        return None
    net = template()
    expected = {k: TensorInfo.of(v) for k, v in net.state_dict().items()}
    try:
        net.load_state_dict(load_tensors(path, "cpu", expected))
    except CheckpointError as exc:
        warnings.warn(f"ignoring the cached feature classifier: {exc}", stacklevel=3)
        return None
    return net.eval()
