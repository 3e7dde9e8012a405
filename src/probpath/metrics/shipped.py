"""The shipped digits feature extractor: ONE classifier that defines the FD-features space of
every digits score, trained once on a fixed split and stored as safetensors + JSON.

Why shipped: retraining the classifier per run (with the run's seed and split) moves the
feature space under the numbers — the same samples score differently under two extractors
(``benchmarks/bench_quality.py --stability`` measures it: 1.6-1.9x for the same samples).
A table entry is reproducible only if the feature space is fixed, as FID fixes Inception's
weights.

The protocol (written into ``digits_extractor.json``): ``load_dataset("digits")``, the
held-out split ``split(0.2, seed=0)`` (:data:`PROTOCOL_SPLIT`), the classifier of
:func:`~probpath.metrics.fit_feature_extractor` trained on the 1,438 training digits with the
settings in :data:`DIGITS_SETTINGS`, one CPU thread (so the float32 round-off, hence the
weights, are the same bit for bit on one machine), inputs snapped to the 17 pixel levels.
On a CPU whose torch kernels differ from those of the machine that wrote the file (another
vector instruction set) the weights come out ~1e-4 apart and the FD features agree to ~1e-4
relative.

Regenerate (deterministic; checked by ``tests/metrics/test_shipped_extractor.py``)::

    python -m probpath.metrics.shipped
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import torch

from probpath.metrics.features import FeatureExtractor, fit_feature_extractor

__all__ = [
    "DIGITS_SETTINGS",
    "PROTOCOL_SPLIT",
    "build_digits_extractor",
    "digits_extractor",
    "extractor_for",
    "is_digits",
    "write_digits_extractor",
]

_DIR = Path(__file__).with_name("shipped_data")
_WEIGHTS = _DIR / "digits_extractor.safetensors"
_CARD = _DIR / "digits_extractor.json"

#: The held-out split of the protocol: ``Dataset.split(fraction, seed=seed)``.
PROTOCOL_SPLIT = {"fraction": 0.2, "seed": 0}
#: Settings of :func:`fit_feature_extractor` for the shipped digits classifier.
DIGITS_SETTINGS = {
    "hidden": [128, 64],
    "steps": 2000,
    "batch_size": 128,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "seed": 0,
    "n_levels": 17,
    "value_range": [0.0, 16.0],
}


def is_digits(dataset) -> bool:
    """Whether ``dataset`` is scikit-learn's 8×8 digits (17 levels), the shipped extractor's
    input."""
    return (
        getattr(dataset, "name", None) == "digits"
        and tuple(dataset.event_shape) in ((1, 8, 8), (64,))
        and getattr(dataset, "n_levels", None) == 17
    )


def _train_split():
    from probpath.data import load_dataset

    data = load_dataset("digits")
    return data.split(PROTOCOL_SPLIT["fraction"], seed=PROTOCOL_SPLIT["seed"])


def build_digits_extractor() -> tuple[FeatureExtractor, dict]:
    """Train the digits classifier as the protocol says (one thread, fixed seed and split).

    Returns:
        The extractor and its card (how it was trained, held-out accuracy).
    """
    train, test = _train_split()
    s = dict(DIGITS_SETTINGS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = fit_feature_extractor(
            train.x.double(), train.y, hidden=tuple(s["hidden"]), steps=s["steps"],
            batch_size=s["batch_size"], lr=s["lr"], weight_decay=s["weight_decay"],
            seed=s["seed"], n_levels=s["n_levels"], value_range=tuple(s["value_range"]),
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        flat = test.x.reshape(len(test), -1).float()
        accuracy = float((net(flat).argmax(1) == test.y).double().mean())
    card = {
        "what": "digits classifier whose penultimate features define FD features",
        "data": "probpath.data.load_dataset('digits') (scikit-learn 8x8 digits, 1,797 images)",
        "split": {**PROTOCOL_SPLIT, "n_train": len(train), "n_held_out": len(test)},
        "settings": {**s, "optimizer": "AdamW", "loss": "cross-entropy", "threads": 1},
        "held_out_accuracy": accuracy,
        "torch": torch.__version__.split("+")[0],
        "regenerate": "python -m probpath.metrics.shipped",
    }
    return net, card


def _tensors(net: FeatureExtractor) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}


def write_digits_extractor(directory: str | Path = _DIR) -> Path:
    """Train and write ``digits_extractor.safetensors`` and ``.json`` into ``directory``."""
    from probpath.core.serialization import atomic_write_bytes, tensors_to_bytes

    net, card = build_digits_extractor()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blob = tensors_to_bytes(_tensors(net))
    card["sha256"] = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(directory / _WEIGHTS.name, blob)
    atomic_write_bytes(directory / _CARD.name, (json.dumps(card, indent=2) + "\n").encode())
    return directory / _WEIGHTS.name


@lru_cache(maxsize=1)
def _load_digits() -> FeatureExtractor:
    from probpath.core.serialization import load_tensors, read_json

    card = read_json(_CARD)
    s = card["settings"]
    tensors = load_tensors(_WEIGHTS)
    net = FeatureExtractor(
        tensors["mean"], tensors["std"], tensors["head.1.weight"].shape[0],
        tuple(s["hidden"]), s["n_levels"], tuple(s["value_range"]),
    )  # fmt: skip
    net.load_state_dict(tensors)
    return net.eval().requires_grad_(False)


def digits_extractor() -> FeatureExtractor:
    """The shipped digits classifier (loaded once; safetensors, never a pickle)."""
    return _load_digits()


def extractor_for(train, *, seed: int = 0) -> FeatureExtractor | None:
    """The feature extractor of a data set: the shipped one for digits; for other labelled
    images a classifier fitted on ``train`` (``seed`` fixed by the caller's protocol, not the
    run's seed); ``None`` for unlabelled or non-image data.

    Args:
        train: the training split (a :class:`~probpath.data.Dataset`).
        seed: seed of the fitted classifier (other data sets only).
    """
    if is_digits(train):
        return digits_extractor()
    shape = tuple(train.event_shape)
    if train.y is None or len(shape) != 3 or int(train.y.unique().numel()) < 2:
        return None
    grid = {}
    if train.discrete and train.n_levels is not None and train.value_range is not None:
        grid = {"n_levels": train.n_levels, "value_range": tuple(train.value_range)}
    return fit_feature_extractor(train.x.double(), train.y, seed=seed, **grid)


if __name__ == "__main__":
    print(write_digits_extractor())
