"""The shipped digits feature extractor: small, safe to load, what its card says, and
regenerated bit for bit by its script."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from probpath.data import load_dataset
from probpath.metrics import class_accuracy, digits_extractor, extractor_for, shipped
from probpath.metrics.features import per_class_frechet_distance


def _card() -> dict:
    return json.loads(shipped._CARD.read_text())


def test_shipped_files_are_small_and_match_their_card():
    """< 1 MB (the brief's bound); the card's sha256 is the weights file's."""
    blob = shipped._WEIGHTS.read_bytes()
    assert len(blob) < 1_000_000
    card = _card()
    assert card["sha256"] == hashlib.sha256(blob).hexdigest()
    assert card["split"]["fraction"] == shipped.PROTOCOL_SPLIT["fraction"]
    assert card["settings"]["steps"] == shipped.DIGITS_SETTINGS["steps"]


def test_card_accuracy_is_the_loaded_classifiers_held_out_accuracy():
    """class_accuracy of the protocol's held-out digits with their true labels is the
    held-out accuracy recorded when the file was written (same computation, float64 mean of
    the same 0/1 outcomes: equal exactly)."""
    _, test = load_dataset("digits").split(0.2, seed=0)
    acc = class_accuracy(test.x, test.y, digits_extractor())
    assert acc == _card()["held_out_accuracy"]
    assert acc > 0.95  # a real digit classifier (sklearn's logistic regression: ~0.97)


def test_extractor_for_uses_the_shipped_one_for_digits_only():
    digits = load_dataset("digits")
    assert extractor_for(digits) is digits_extractor()
    assert extractor_for(load_dataset("moons", n=50)) is None  # no labels, not images


def test_per_class_fd_is_zero_for_the_held_out_data_itself_and_grows_with_swapped_labels():
    """Samples equal to the held-out points of their class: every per-class Gaussian fit is
    identical, FD = 0 up to the sqrtm round-off (~1e-8 relative to trace(Sigma) ~ 1e2 here).
    Labelling 0s as 1s and 1s as 0s makes two classes' fits differ: FD > 0 clearly."""
    _, test = load_dataset("digits").split(0.2, seed=0)
    ex = digits_extractor()
    same = per_class_frechet_distance(test.x, test.y, test.x, test.y, ex)
    assert abs(same) < 1e-6
    swapped = test.y.clone()
    swapped[test.y == 0], swapped[test.y == 1] = 1, 0
    assert per_class_frechet_distance(test.x, swapped, test.x, test.y, ex) > 1.0


@pytest.mark.slow
def test_regenerating_the_extractor_is_bit_exact():
    """The script trains on one thread with fixed seeds: the same bytes as the shipped file."""
    net, card = shipped.build_digits_extractor()
    loaded = digits_extractor().state_dict()
    for k, v in shipped._tensors(net).items():
        assert torch.equal(v, loaded[k]), k
    assert card["held_out_accuracy"] == _card()["held_out_accuracy"]
