"""The CBLAS kernels of ``likelihood/_blas.py`` against torch's general products, and the
serial lanes they run in."""

from __future__ import annotations

import pytest
import torch

from probpath.likelihood import _blas

# a length-d dot product is within d u |a|^T |b| of the exact one (Higham 2002, §3.1); for
# standard normal entries |a|^T |b| ~ (2 / pi) d, so products of these sizes agree with
# torch's to ~d^2 u: 17^2 * 1.1e-16 ~ 3e-14 (float64), 17^2 * 6e-8 ~ 2e-5 (float32)
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-4}


def _data(dtype, n=300, d=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(d, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("triangle", ["upper", "lower"])
def test_trmm_is_the_triangular_product(dtype, triangle):
    x, a = _data(dtype)
    u = torch.triu(a) if triangle == "upper" else torch.tril(a)
    assert _blas.triangle_of(u) == triangle
    with _blas.serial_lanes():
        assert _blas.native(x, u)
        got = _blas.trmm_(x.clone(), u, triangle)
    torch.testing.assert_close(got, x @ u, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_syrk_accumulates_the_upper_gram_triangle(dtype):
    x, _ = _data(dtype)
    gram = torch.zeros(17, 17, dtype=dtype)
    with _blas.serial_lanes():
        _blas.syrk_(gram, x)
        _blas.syrk_(gram, x[:7])
    want = x.T @ x + x[:7].T @ x[:7]
    scale = float(want.abs().max())
    upper = torch.ones(17, 17, dtype=torch.bool).triu_()
    torch.testing.assert_close(gram[upper], want[upper], rtol=0, atol=TOLERANCE[dtype] * scale)
    torch.testing.assert_close(
        _blas.symmetrize_upper_(gram), want, rtol=0, atol=TOLERANCE[dtype] * scale
    )


def test_outside_the_lanes_and_for_other_inputs_torch_computes_them():
    """No native kernel outside :func:`serial_lanes`, for non-contiguous or mixed-dtype
    input, or a general factor; the fallbacks give the same products."""
    x, a = _data(torch.float64)
    u = torch.triu(a)
    assert not _blas.native(x, u)  # outside the lanes
    with _blas.serial_lanes():
        assert not _blas.native(x.T, u)
        assert not _blas.native(x, u.float())
        assert _blas.triangle_of(a) is None
        torch.testing.assert_close(_blas.trmm_(x.clone(), a, None), x @ a)
        strided = torch.zeros(17, 17, dtype=torch.float64).T  # not contiguous: general path
        torch.testing.assert_close(_blas.syrk_(strided, x), x.T @ x)
        out = torch.empty(300, 17, dtype=torch.float64)
        torch.testing.assert_close(_blas.mm(x, a, out), x @ a)
    assert _blas.trmm_(x[:0].clone(), u, "upper").shape == (0, 17)


def test_lanes_run_every_job_once_in_order_and_restore_threads():
    before = torch.get_num_threads()
    with _blas.serial_lanes() as run:
        assert torch.get_num_threads() == 1
        got = run(lambda lane, lanes: (lane, lanes, torch.get_num_threads()))
    assert torch.get_num_threads() == before
    lanes = got[0][1]
    assert [g[0] for g in got] == list(range(lanes)) and all(g[2] == 1 for g in got)
