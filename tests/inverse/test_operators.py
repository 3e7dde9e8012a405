"""Measurement operators: adjoint and pseudo-inverse identities, against dense linear algebra.

Expected values are exact identities of the matrix ``A`` (probed densely by
``operator.matrix()``): ``<A x, y> = <x, A^T y>``; ``A^+`` equals ``torch.linalg.pinv(A)``
(SVD; for the blur with the same relative cut-off ``rtol`` on singular values, which for a
symmetric circulant matrix are ``|H|``). Float64 round-off on O(1) entries of 64-D signals:
atol 1e-10.
"""

from __future__ import annotations

import pytest
import torch

from probpath.inverse import OPERATORS, GaussianBlur, Inpainting, make_operator

DT = torch.float64
ATOL = 1e-10
CASES = [
    ("inpaint", (1, 8, 8), {}),
    ("inpaint", (16,), {}),
    ("superres", (1, 8, 8), {"factor": 2}),
    ("superres", (16,), {"factor": 4}),
    ("deblur", (1, 8, 8), {"std": 0.8}),
    ("deblur", (16,), {"std": 1.5}),
    ("denoise", (2, 4, 4), {}),
    ("project", (16,), {"m": 5}),
]


@pytest.mark.parametrize("task, shape, options", CASES)
def test_adjoint_and_pinv_match_dense_algebra(task, shape, options):
    op = make_operator(task, shape, **options)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, *shape, generator=g, dtype=DT)
    y = op.forward(torch.randn(3, *shape, generator=g, dtype=DT))
    a = op.matrix()
    flat = x.reshape(3, -1)
    assert torch.allclose(op.forward(x).reshape(3, -1), flat @ a.T, atol=ATOL, rtol=0)
    assert torch.allclose(op.adjoint(y).reshape(3, -1), y.reshape(3, -1) @ a, atol=ATOL, rtol=0)
    lhs = (op.forward(x) * y).sum()
    assert torch.allclose(lhs, (x * op.adjoint(y)).sum(), atol=ATOL, rtol=0)
    u, s, v = op.svd()
    assert torch.allclose((u * s) @ v.T, a, atol=ATOL, rtol=0)
    rtol = getattr(op, "rtol", 1e-12)
    want = y.reshape(3, -1) @ torch.linalg.pinv(a, rtol=rtol).T
    assert torch.allclose(op.pinv(y).reshape(3, -1), want, atol=1e-8, rtol=0)


def test_default_inpainting_observes_the_top_half():
    op = Inpainting((1, 4, 4))
    assert op.mask[:, :2].all() and not op.mask[:, 2:].any()


def test_noise_level_and_bad_input():
    op = make_operator("denoise", (4,), sigma_y=0.5)
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(20000, 4, dtype=DT)
    # std of 80000 N(0, 0.25) draws: s.e. 0.5 / sqrt(2 * 80000) = 0.00125; 6 s.e.
    assert abs(float(op.observe(x, generator=g).std()) - 0.5) < 6 * 0.00125
    with pytest.raises(ValueError, match="task"):
        make_operator("colorize", (4,))
    with pytest.raises(ValueError, match="sigma_y"):
        make_operator("denoise", (4,), sigma_y=-1.0)
    with pytest.raises(ValueError, match="factor"):
        make_operator("superres", (1, 5, 5), factor=2)
    with pytest.raises(ValueError, match="std"):
        GaussianBlur((4,), std=0.0)
    assert set(OPERATORS) == {"inpaint", "superres", "deblur", "denoise", "project"}
