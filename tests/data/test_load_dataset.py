"""``load_dataset`` by name, digits metadata, and the ``Dataset`` scaling helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probpath.data import (
    TOY_NAMES,
    Dataset,
    available_datasets,
    demo_gaussian_mixture,
    load_dataset,
    make_toy,
    rescale,
)


def test_available_datasets():
    names = available_datasets()
    assert set(TOY_NAMES) <= set(names) and {"gmm", "digits"} <= set(names)


def test_toy_by_name_default_size_and_seed():
    d = load_dataset("pinwheel")
    assert len(d) == 10_000 and d.x.dtype == torch.float32 and d.event_shape == (2,)
    assert torch.equal(load_dataset("pinwheel", n=50, seed=2).x, make_toy("pinwheel", 50, seed=2))


def test_gmm_has_known_parameters_and_labels():
    d = load_dataset("gmm", n=3000, seed=1)
    w, mu, _ = demo_gaussian_mixture()
    assert d.num_classes == len(w) == 6 and d.y.shape == (3000,)
    assert d.x.dtype == torch.float32
    # points sit around their component's mean (components are a few sd apart)
    dist_own = (d.x.double() - mu[d.y]).norm(dim=1)
    assert float(dist_own.median()) < 1.0
    d5 = load_dataset("gmm", n=10, dim=5, k=3)
    assert d5.event_shape == (5,) and d5.num_classes == 3


def test_digits_metadata():
    d = load_dataset("digits")
    assert d.x.shape == (1797, 1, 8, 8) and d.x.dtype == torch.float32
    assert d.discrete and d.n_levels == 17 and d.value_range == (0.0, 16.0)
    assert d.num_classes == 10 and d.y.shape == (1797,)
    assert torch.equal(d.x, d.x.round()) and d.x.min() == 0 and d.x.max() == 16
    from sklearn.datasets import load_digits

    assert np.array_equal(d.x.reshape(-1, 64).numpy(), load_digits().data.astype(np.float32))
    sub = load_dataset("digits", n=100, seed=3)
    assert len(sub) == 100 and sub.n_levels == 17


def test_load_dataset_errors():
    with pytest.raises(ValueError, match=r"unexpected option\(s\) \['dim'\]"):
        load_dataset("moons", dim=3)
    with pytest.raises(ValueError, match="has only 1797 samples; lower n"):
        load_dataset("digits", n=5000)
    with pytest.raises(ValueError, match="labels= is for files"):
        load_dataset("moons", labels=[0, 1])
    with pytest.raises(ValueError, match="n must be a positive integer"):
        load_dataset("digits", n=0)


def test_scaled_and_bin_width():
    d = load_dataset("digits", n=50)
    assert d.bin_width == 1.0
    s = d.scaled(-1, 1)
    assert s.value_range == (-1.0, 1.0) and s.discrete and s.n_levels == 17
    assert s.bin_width == pytest.approx(2 / 16)
    assert s.x.min() >= -1 and s.x.max() <= 1
    back = rescale(s.x, s.value_range, d.value_range)
    assert torch.allclose(back, d.x, atol=1e-5)
    assert Dataset(x=torch.zeros(3, 2)).bin_width is None
    with pytest.raises(ValueError, match="no value_range"):
        Dataset(x=torch.zeros(3, 2)).scaled()
    with pytest.raises(ValueError, match="low < high"):
        rescale(d.x, (1, 1), (0, 1))
