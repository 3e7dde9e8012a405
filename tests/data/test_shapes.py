"""``shapes2d``: seeded factors, exact geometry of the renderer, ``load_dataset`` metadata."""

from __future__ import annotations

import math

import pytest
import torch

from probpath.data import (
    SHAPES2D_FACTORS,
    SHAPES2D_SIZES,
    available_datasets,
    load_dataset,
    make_shapes2d,
    render_shapes2d,
    sample_shapes2d_factors,
)

SIZE = 32


def _factors(shape, scale=5, rotation=0, x=3, y=4):
    return torch.tensor([[shape, scale, rotation, x, y]])


def _nominal(f):
    """Centre (column, row) in pixels and radius of factor vector ``f``, from the layout table."""
    radius = (0.5 + 0.5 * f[1] / 5) * 0.16 * SIZE
    cx = (0.25 + 0.5 * f[3] / 7) * SIZE
    cy = (0.25 + 0.5 * f[4] / 7) * SIZE
    return cx, cy, radius


def _centroid(img):
    rows, cols = torch.nonzero(img[0], as_tuple=True)
    # pixel (r, c) has its centre at (c + 0.5, r + 0.5)
    return float(cols.double().mean()) + 0.5, float(rows.double().mean()) + 0.5


def test_load_dataset_metadata_and_labels():
    d = load_dataset("shapes2d", n=200, seed=3)
    assert "shapes2d" in available_datasets()
    assert d.x.shape == (200, 1, SIZE, SIZE) and d.x.dtype == torch.float32
    assert set(d.x.unique().tolist()) <= {0.0, 1.0}
    assert d.value_range == (0.0, 1.0) and d.discrete and d.n_levels == 2
    assert d.num_classes == 3 and d.bin_width == 1.0
    # y is the shape column of the same seeded draw
    draw = make_shapes2d(200, seed=3)
    assert torch.equal(d.y, draw.factors[:, 0]) and torch.equal(d.x, draw.x)
    assert load_dataset("shapes2d", n=4, size=64).event_shape == (1, 64, 64)


def test_same_seed_same_images_other_seed_differs():
    a, b, c = make_shapes2d(50, seed=0), make_shapes2d(50, seed=0), make_shapes2d(50, seed=1)
    assert torch.equal(a.x, b.x) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.factors, c.factors)


def test_factors_uniform_on_the_grid():
    n = 6000
    f = sample_shapes2d_factors(n, torch.Generator().manual_seed(0))
    assert f.shape == (n, len(SHAPES2D_FACTORS)) and f.dtype == torch.int64
    for j, k in enumerate(SHAPES2D_SIZES):
        counts = torch.bincount(f[:, j], minlength=k).double()
        assert len(counts) == k
        # each count is Binomial(n, 1/k): mean n/k, s.e. sqrt(n (1/k)(1 - 1/k)); 5 s.e. bound
        # (two-sided p ~ 6e-7 per cell, 33 cells)
        se = math.sqrt(n * (1 / k) * (1 - 1 / k))
        assert (counts - n / k).abs().max() < 5 * se


@pytest.mark.parametrize("shape", [0, 1])
def test_centrally_symmetric_shapes_sit_at_their_centre(shape):
    # square and ellipse at rotation 0 are axis-aligned and symmetric about their centre:
    # every row (column) of on-pixels is an interval of pixel centres inside [c - a, c + a],
    # whose mean lies within half a pixel of c, so the centroid is within 0.5 px per axis.
    for x, y in [(0, 0), (3, 5), (7, 7)]:
        f = _factors(shape, x=x, y=y)
        cx, cy, _ = _nominal(f[0].tolist())
        mx, my = _centroid(render_shapes2d(f)[0])
        assert abs(mx - cx) <= 0.5 and abs(my - cy) <= 0.5


def test_square_pixel_count_is_exact():
    # axis-aligned square of half side h = 0.8 r: on-pixels are those whose centre lies in
    # [c - h, c + h] along each axis, so the count is the product of two interval counts.
    f = _factors(0, scale=5, x=2, y=6)
    cx, cy, r = _nominal(f[0].tolist())
    h = 0.8 * r
    centres = torch.arange(SIZE, dtype=torch.float64) + 0.5
    nx = int(((centres >= cx - h) & (centres <= cx + h)).sum())
    ny = int(((centres >= cy - h) & (centres <= cy + h)).sum())
    assert int(render_shapes2d(f).sum()) == nx * ny


def test_area_grows_with_scale_and_rotation_moves_the_heart():
    for shape in range(3):
        areas = [int(render_shapes2d(_factors(shape, scale=s)).sum()) for s in range(6)]
        # non-decreasing, and growing over the range: one scale step widens the shape by
        # 2 * 0.1 * 0.16 * 32 * 0.8 = 0.8 px (square), so the pixel grid may merge neighbours
        assert all(a <= b for a, b in zip(areas, areas[1:], strict=False)), (shape, areas)
        assert areas[-1] >= 2 * areas[0], (shape, areas)
    # the heart has no rotational symmetry: every one of the 8 angles draws another image
    imgs = render_shapes2d(torch.tensor([[2, 5, k, 3, 3] for k in range(8)]))
    flat = imgs.reshape(8, -1)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(8) for j in range(i))


def test_ellipse_area_matches_pi_a_b():
    # semi-axes r and 0.6 r: area pi 0.6 r^2. The pixel count of a convex region differs from
    # its area by less than its perimeter (each boundary pixel is cut by the curve); the
    # ellipse's perimeter is below 2 pi r.
    for scale in (2, 5):
        f = _factors(1, scale=scale)
        _, _, r = _nominal(f[0].tolist())
        count = float(render_shapes2d(f).sum())
        assert abs(count - math.pi * 0.6 * r * r) < 2 * math.pi * r


@pytest.mark.parametrize(
    "factors, match",
    [
        (torch.zeros(3, 4, dtype=torch.long), "shape"),
        (torch.zeros(3, 5), "integer"),
        (torch.tensor([[3, 0, 0, 0, 0]]), "indices"),
        (torch.tensor([[0, 0, 0, 0, -1]]), "indices"),
    ],
)
def test_bad_factors_are_rejected(factors, match):
    with pytest.raises(ValueError, match=match):
        render_shapes2d(factors)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="size"):
        render_shapes2d(_factors(0), size=4)
    with pytest.raises(ValueError, match="unexpected option"):
        load_dataset("shapes2d", n=2, dim=3)
    with pytest.raises(ValueError, match="n"):
        make_shapes2d(0)
