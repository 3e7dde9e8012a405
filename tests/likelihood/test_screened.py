"""The screened E-step of full-covariance mixtures (``likelihood/_screened.py``) against the
dense one: the bound is a bound, skipped pairs are negligible, and fits are the same."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from probpath.likelihood import _screened
from probpath.likelihood._screened import MARGIN, Screen, ScreenPolicy
from probpath.likelihood.mixture import GaussianMixture


def _mixture_data(n=3000, d=24, k=6, seed=0, spread=4.0, offset=0.0):
    """Well-separated components with anisotropic covariances (condition numbers ~1e2)."""
    rng = np.random.RandomState(seed)
    centers = rng.randn(k, d) * spread
    a = rng.uniform(0.3, 1.5, size=(k, 1, 1)) * np.eye(d) + 0.15 * rng.randn(k, d, d)
    labels = rng.randint(k, size=n)
    return centers[labels] + np.einsum("nij,nj->ni", a[labels], rng.randn(n, d)) + offset


def _fitted(x, k, iters=3):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(k, covariance_type="full", max_iter=iters, random_state=0).fit(x)


def _dense_log_joint(gm, x):
    """``ln π_k + ln N(x_n | mu_k, Sigma_k)`` ``(n, K)`` from the definition, float64."""
    diff = x[:, None, :] - gm.means_[None]  # (n, K, d)
    y = torch.einsum("nkd,kde->nke", diff, gm.precisions_cholesky_)
    log_det = torch.log(torch.diagonal(gm.precisions_cholesky_, dim1=-2, dim2=-1)).sum(-1)
    d = x.shape[1]
    return torch.log(gm.weights_) + log_det - 0.5 * d * math.log(2 * math.pi) - 0.5 * (y**2).sum(2)


@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("directions", [1, 2, None])
def test_partial_distance_bound_is_an_upper_bound_on_every_pair(offset, directions):
    """Step 1 of the module: ``ln π_k + c_k - L_nk / 2 >= ℓ_nk`` for every pair, with any
    number of directions, also for data far from the origin (the rounding terms grow with
    ``||x||``). The comparison allows the exact ℓ's own float64 error, ``~1e-13 |ℓ|``."""
    x = torch.as_tensor(_mixture_data(offset=offset))
    gm = _fitted(x, 6)
    with gm._torch_state():
        screen = gm._screen(directions)
        xc = x - gm.center_
        upper = _screened._upper_log_joint_t(xc, screen.columns, screen.log_c, _screened._fresh).T
        exact = _dense_log_joint(gm, x)
    assert torch.all(upper >= exact - 1e-13 * exact.abs().clamp_min(1.0))


def test_skipped_pairs_are_negligible_and_kept_pairs_exact():
    """Kept entries equal the definition to round-off (relative 1e-12: a length-24 dot
    product and a square sum); every skipped pair lies more than MARGIN nats below its
    row's best, so its responsibility is below e^-50. The screen must skip most pairs here
    (6 well-separated components), or the test would not exercise the cut."""
    x = torch.as_tensor(_mixture_data())
    gm = _fitted(x, 6)
    with gm._torch_state():
        x1 = _screened._centred_with_ones(x, gm.center_, _screened._fresh)
        ell, gathered = gm._screen().log_joint_t(x1)
        exact = _dense_log_joint(gm, x).T
    assert gathered is not None
    kept = torch.isfinite(ell)
    assert kept.float().mean() < 0.3
    torch.testing.assert_close(ell[kept], exact[kept], rtol=1e-12, atol=1e-12)
    best = exact.amax(0, keepdim=True)
    assert torch.all(exact[~kept] < (best - MARGIN).expand_as(exact)[~kept])
    assert torch.all(kept[exact.argmax(0), torch.arange(x.shape[0])])  # the best is kept


def _fit_pair(monkeypatch, x, k, init=None, **kw):
    """The same fit with the screen (recording the kept share) and forced dense; ``init``:
    more constructor arguments (a given start)."""
    kept = []
    record = ScreenPolicy.record

    def spy(self, n_kept, needed, pairs, directions):
        kept.append(n_kept / pairs)
        record(self, n_kept, needed, pairs, directions)

    monkeypatch.setattr(ScreenPolicy, "record", spy)
    args = dict(covariance_type="full", tol=0.0, max_iter=8, random_state=0, **(init or {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        screened = GaussianMixture(k, **args).fit(x, **kw)
        monkeypatch.setattr(ScreenPolicy, "use", lambda self: False)
        dense = GaussianMixture(k, **args).fit(x, **kw)
    return screened, dense, kept


@pytest.mark.parametrize("weighted", [False, True])
def test_screened_fit_equals_the_dense_fit(monkeypatch, weighted):
    """Skipping pairs with γ < e^-50 changes ln p(x_n) by < K e^-50 relative and the
    statistics by as little, far below float64 round-off; what remains is the difference
    between summation orders (~1e-16 per operation, grown by 8 iterations and covariance
    condition numbers ~1e2-1e3): 1e-12 on the bound, 1e-9 on the parameters."""
    x = _mixture_data(seed=3)
    w = {"sample_weight": np.random.RandomState(1).uniform(0.5, 2.0, len(x))} if weighted else {}
    screened, dense, kept = _fit_pair(monkeypatch, x, 6, **w)
    assert kept and max(kept[2:]) < 0.3  # the screen did skip most pairs
    assert abs(screened.lower_bound_ - dense.lower_bound_) <= 1e-12 * abs(dense.lower_bound_)
    np.testing.assert_allclose(screened.lower_bounds_, dense.lower_bounds_, rtol=1e-12)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        got, want = getattr(screened, name), getattr(dense, name)
        assert np.max(np.abs(got - want)) <= 1e-9 * np.max(np.abs(want)), name
    np.testing.assert_array_equal(screened.labels_, dense.labels_)
    np.testing.assert_array_equal(screened.predict(x), dense.predict(x))


def test_overlapping_components_fall_back_to_the_dense_pass(monkeypatch):
    """Components on top of each other: every pair matters, so each screened pass keeps
    everything; after two such passes the policy runs ``backoff`` dense passes."""
    rng = np.random.RandomState(0)
    x = rng.randn(2000, 20)
    screened, dense, kept = _fit_pair(monkeypatch, x, 4)
    assert kept[:2] == [1.0, 1.0] and len(kept) == 2  # 8 iterations: 2 screened, 6 dense
    assert abs(screened.lower_bound_ - dense.lower_bound_) <= 1e-12 * abs(dense.lower_bound_)


def test_policy_adapts_the_number_of_directions():
    """Fewer directions while the bound keeps <= 5 % extra pairs, twice as many above 20 %;
    a pass keeping over half the pairs twice in a row triggers ``backoff`` dense passes."""
    policy = ScreenPolicy(backoff=3)
    policy.record(kept=104, needed=100, pairs=1000, directions=5)
    assert policy.directions == 4
    policy.record(kept=110, needed=100, pairs=1000, directions=4)
    assert policy.directions == 4
    policy.record(kept=130, needed=100, pairs=1000, directions=4)
    assert policy.directions == 8
    assert policy.use()
    policy.record(kept=900, needed=900, pairs=1000, directions=8)
    assert policy.use()
    policy.record(kept=900, needed=900, pairs=1000, directions=8)
    assert [policy.use() for _ in range(4)] == [False, False, False, True]


def test_screen_is_only_used_where_it_applies():
    """float32 fits (the rounding bound is float64's), d <= 16 (quadratic features) and
    K < 3 (at most one pair per row could be skipped) keep the dense pass."""
    x = _mixture_data(n=500, d=20, k=3)

    def screen(data, k):
        gm = _fitted(data, k)
        with gm._torch_state():
            return gm._screen()

    assert isinstance(screen(x, 3), Screen)
    assert screen(x.astype(np.float32), 3) is None
    assert screen(x[:, :10], 3) is None
    assert screen(x, 2) is None


@pytest.mark.parametrize("threads", [1, 2])
def test_blocks_probe_and_lanes_give_the_dense_fit(monkeypatch, threads):
    """Small blocks (several per lane, the first split into a probe) and one or two lanes
    (``_blas.serial_lanes``) change only the summation order: the same bounds as
    ``test_screened_fit_equals_the_dense_fit``. The start is given as the precisions of a
    3-iteration fit, whose Cholesky factors are lower triangular (the triangular kernel's
    other case) until the first M-step; they are tight enough for the first pass to screen."""
    monkeypatch.setattr(_screened, "ROWS", 700)
    monkeypatch.setattr(_screened, "_PROBE_ROWS", 150)
    x = _mixture_data(seed=3)  # the data of test_screened_fit_equals_the_dense_fit
    start = _fitted(x, 6)
    init = {
        "weights_init": start.weights_,
        "means_init": start.means_,
        "precisions_init": start.precisions_,
    }
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        screened, dense, kept = _fit_pair(monkeypatch, x, 6, init)
    finally:
        torch.set_num_threads(before)
    assert kept and max(kept) < 0.3  # every pass screened, the first included
    assert abs(screened.lower_bound_ - dense.lower_bound_) <= 1e-12 * abs(dense.lower_bound_)
    for name in ("weights_", "means_", "covariances_"):
        got, want = getattr(screened, name), getattr(dense, name)
        assert np.max(np.abs(got - want)) <= 1e-9 * np.max(np.abs(want)), name
    np.testing.assert_array_equal(screened.labels_, dense.labels_)


def test_labels_over_many_blocks_are_the_exact_argmax():
    """Margin 0 keeps every pair whose upper bound reaches the row's best exact value, so
    the argmax over kept pairs is the argmax of the definition (ties: none in float64 data
    like these), block by block."""
    x = torch.as_tensor(_mixture_data(seed=7))
    gm = _fitted(x, 6)
    with gm._torch_state():
        got = _screened.screened_labels(x, gm._screen(), rows=400)
        want = _dense_log_joint(gm, x).argmax(1)
    assert torch.equal(got, want)


def test_the_bound_stays_a_bound_beyond_float32_range():
    """The bound's product runs in float32: centred values past its range (~3.4e38) give
    inf / nan there, which must become the trivial distance bound 0 (upper bound ln π_k +
    c_k), never an infinite distance that would skip the pair."""
    x = torch.as_tensor(_mixture_data())
    gm = _fitted(x, 6)
    with gm._torch_state():
        screen = gm._screen()
        far = torch.full((3, x.shape[1]), 1e39, dtype=torch.float64)
        upper = _screened._upper_log_joint_t(far, screen.columns, screen.log_c, _screened._fresh)
    assert torch.equal(upper, screen.log_c[:, None].expand(-1, 3))
