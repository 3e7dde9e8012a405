"""Stepwise (mini-batch) EM, ``partial_fit`` for streams, verbose output, and CUDA."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from probpath.likelihood.em import ConvergenceWarning
from probpath.likelihood.mixture import GaussianMixture


def _blobs(n=3000, seed=0):
    rng = np.random.RandomState(seed)
    c = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
    return c[rng.randint(3, size=n)] + rng.randn(n, 2) * np.array([1.0, 0.5])


def _init(x):
    return {"means_init": [[-3.0, 1.0], [3.0, -1.0], [1.0, 4.0]]}


def test_stepwise_em_reaches_the_batch_em_solution():
    x = torch.as_tensor(_blobs())  # torch in, torch out
    batch = GaussianMixture(3, random_state=0, tol=1e-8, max_iter=200, **_init(x)).fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        step = GaussianMixture(
            3, random_state=0, tol=0, max_iter=4, batch_size=250, **_init(x)
        ).fit(x)
    assert step.n_steps_ == 4 * 12
    assert abs(step.score(x) - batch.score(x)) < 0.01
    order = lambda m: m[torch.argsort(m[:, 0])]  # noqa: E731
    torch.testing.assert_close(order(step.means_), order(batch.means_), atol=0.1, rtol=0)


def test_partial_fit_on_a_stream():
    x = _blobs(seed=1)
    gm = GaussianMixture(3, random_state=0, **_init(x))
    for chunk in np.array_split(x, 20):
        gm.partial_fit(chunk)
    assert gm.n_steps_ == 20 and len(gm.lower_bounds_) == 20
    ref = GaussianMixture(3, random_state=0, **_init(x)).fit(x)
    assert abs(gm.score(x) - ref.score(x)) < 0.02
    assert np.isfinite(gm.score_samples(x)).all()


def test_verbose_prints_progress(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixture(2, verbose=2, verbose_interval=1, max_iter=3, tol=0, random_state=0).fit(
            _blobs(n=100)
        )
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 3" in out and "lower bound" in out


@pytest.mark.cuda
def test_cuda_fit_matches_cpu():
    x = _blobs(n=2000)
    cpu = GaussianMixture(3, random_state=0, tol=1e-9, max_iter=100, **_init(x)).fit(x)
    gpu = GaussianMixture(3, random_state=0, tol=1e-9, max_iter=100, device="cuda", **_init(x)).fit(
        x
    )
    assert gpu.means_.device.type == "cuda"
    torch.testing.assert_close(gpu.means_.cpu(), cpu.means_, rtol=1e-8, atol=1e-10)
    assert abs(gpu.lower_bound_ - cpu.lower_bound_) < 1e-10
    s = gpu.generate(10, generator=torch.Generator("cuda").manual_seed(0))
    assert s.device.type == "cuda"
