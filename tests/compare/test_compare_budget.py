"""The budget rules of ``compare`` that keep image comparisons on a CPU bounded: the feature
classifier (bounded by the time budget, cached per data set), compact image models on a
CPU, and an NLL plan for every model with a density."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import probpath.compare.features as features_module
from probpath.compare import DataSpace, run_compare
from probpath.compare.features import CACHE_DIR, MIN_STEPS, feature_classifier
from probpath.data.dataset import Dataset
from probpath.data.digits import load_digits


@pytest.fixture(autouse=True)
def _short_classifier(monkeypatch):
    """150 full steps instead of 2000: the same code paths, seconds instead of a minute on
    a shared CPU (still above MIN_STEPS, so a bounded run is told apart)."""
    monkeypatch.setattr(features_module, "FULL_STEPS", 150)


def _digits(n: int = 120) -> Dataset:
    """``n`` of the embedded 8 x 8 digits (levels 0..16, ten classes) under another name:
    labelled user images, for which compare trains its own classifier (digits itself gets the
    shipped one, see the last test)."""
    d = load_digits().subset(torch.arange(n))
    return dataclasses.replace(d, name="user-images")


def test_digits_get_the_shipped_classifier_never_retrained(tmp_path):
    """On digits the feature space is the protocol's fixed one: the shipped extractor,
    whatever the seed or budget, and nothing is written to the cache."""
    from probpath.metrics import digits_extractor

    train = load_digits().subset(torch.arange(120))
    space = DataSpace.for_entry(train)
    got = feature_classifier(train, space, 3, time_budget=1e-6, cache_dir=tmp_path)
    assert got.shipped and got.extractor is digits_extractor()
    assert not list(tmp_path.iterdir())


def test_feature_classifier_is_cached_per_data_set(tmp_path):
    """A second call on the same data and seed loads the weights the first one wrote:
    identical features, bit for bit (the same float32 tensors, so tolerance 0)."""
    train = _digits()
    space = DataSpace.for_entry(train)
    first = feature_classifier(train, space, 0, cache_dir=tmp_path)
    assert first is not None and not first.cached and first.steps == features_module.FULL_STEPS
    files = list(tmp_path.glob("features-*.safetensors"))
    assert len(files) == 1
    again = feature_classifier(train, space, 0, cache_dir=tmp_path)
    assert again.cached and again.steps == features_module.FULL_STEPS
    x = train.x[:16].double().reshape(16, -1)
    assert torch.equal(first.extractor.features(x), again.extractor.features(x))
    # another seed is another classifier: no cache hit
    other = feature_classifier(train, space, 1, cache_dir=tmp_path)
    assert not other.cached and len(list(tmp_path.glob("features-*.safetensors"))) == 2


def test_a_corrupt_cache_file_is_ignored_with_a_warning(tmp_path):
    train = _digits()
    space = DataSpace.for_entry(train)
    feature_classifier(train, space, 0, cache_dir=tmp_path)
    (path,) = tmp_path.glob("features-*.safetensors")
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="ignoring the cached feature classifier"):
        again = feature_classifier(train, space, 0, cache_dir=tmp_path)
    assert not again.cached


def test_feature_classifier_steps_fit_the_time_budget():
    """A budget of 1 µs fits no step: the floor :data:`MIN_STEPS`; unlabelled data or
    vectors get no classifier."""
    train = _digits()
    space = DataSpace.for_entry(train)
    bounded = feature_classifier(train, space, 0, time_budget=1e-6)
    assert bounded.steps == MIN_STEPS and not bounded.cached
    unlabelled = Dataset(train.x, name="x", value_range=train.value_range)
    assert feature_classifier(unlabelled, space, 0) is None


def test_compare_builds_image_models_compact_on_a_cpu(tmp_path):
    """``model_size="auto"`` on a CPU builds image models from their entry's quick kwargs
    (vae-conv: channels [16, 32] instead of [32, 64]) and says so in the notes; ``"full"``
    keeps the full size."""
    data = _digits()
    kw = dict(steps=1, out_dir=None, n_eval=10, verbose=False, device="cpu", figure=False)
    auto = run_compare(["vae-conv"], data, **kw)
    assert auto.settings["compact_models"] == ["vae-conv"]
    assert any(n.startswith("Compact models: vae-conv") for n in auto.notes)
    full = run_compare(["vae-conv"], data, model_size="full", **kw)
    assert full.settings["compact_models"] == []
    assert not any(n.startswith("Compact models") for n in full.notes)
    with pytest.raises(ValueError, match="model_size must be one of"):
        run_compare(["vae-conv"], data, model_size="tiny", **kw)


def test_compare_writes_the_classifier_cache_under_its_output(tmp_path):
    """With an output directory, the classifier lands in ``OUT/.cache`` and a rerun loads it
    (the notes say so)."""
    data = _digits()
    kw = dict(steps=1, n_eval=10, verbose=False, device="cpu", figure=False)
    run_compare(["gaussian"], data, out_dir=tmp_path, **kw)
    assert len(list((tmp_path / CACHE_DIR).glob("features-*.safetensors"))) == 1
    again = run_compare(["gaussian"], data, out_dir=tmp_path, **kw)
    assert any("loaded from the cache" in n for n in again.notes)
