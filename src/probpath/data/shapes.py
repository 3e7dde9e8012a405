"""``shapes2d``: dSprites-like binary images with known generative factors (no download).

Each image shows one white shape on black, drawn from five independent factors on a grid
(after dSprites, Matthey et al. 2017, the data set behind the disentanglement scores of
Higgins et al. 2017 and the survey's Table 4):

=====  ============  =====  ===================================================================
col    factor        size   values (index ``k`` of ``size``)
=====  ============  =====  ===================================================================
0      ``shape``     3      0 square (half side 0.8 radius), 1 ellipse (semi-axes 1, 0.6),
                             2 heart (the curve ``(x^2 + y^2 - 1)^3 = x^2 y^3``, scaled)
1      ``scale``     6      radius ``(0.5 + 0.5 k / 5) * 0.16 * image size``
2      ``rotation``  8      ``k * (pi / 2) / 8`` (a quarter turn, in eighths)
3      ``x``         8      centre column ``(0.25 + 0.5 k / 7) * image size``
4      ``y``         8      centre row ``(0.25 + 0.5 k / 7) * image size`` (down the image)
=====  ============  =====  ===================================================================

Pixels are 0 or 1: a pixel is on when its centre lies inside the shape (so at 32x32, where one
scale step widens a square by 0.8 px, neighbouring scales can draw the same square; dSprites'
binary images alias the same way). Rendering is one
vectorised membership test per pixel (``(n, size, size)`` coordinates at once), a few
seconds for 10,000 images of 32x32 on a CPU.

>>> s = make_shapes2d(4, seed=0)
>>> tuple(s.x.shape), tuple(s.factors.shape)
((4, 1, 32, 32), (4, 5))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from probpath.core.validation import check_positive_int

__all__ = [
    "SHAPES2D_FACTORS",
    "SHAPES2D_SIZES",
    "Shapes2D",
    "make_shapes2d",
    "render_shapes2d",
    "sample_shapes2d_factors",
]

SHAPES2D_FACTORS: tuple[str, ...] = ("shape", "scale", "rotation", "x", "y")
SHAPES2D_SIZES: tuple[int, ...] = (3, 6, 8, 8, 8)

_RADIUS = 0.16  # largest shape radius as a fraction of the image size
_CHUNK = 4096  # images rendered at once (memory: CHUNK * size^2 floats per temporary)


@dataclass(frozen=True)
class Shapes2D:
    """Rendered images and their factors.

    Attributes:
        x: ``(n, 1, size, size)`` float32 in ``{0, 1}``.
        factors: ``(n, 5)`` int64 factor indices, columns as :data:`SHAPES2D_FACTORS`.
    """

    x: torch.Tensor
    factors: torch.Tensor


def sample_shapes2d_factors(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` factor vectors drawn independently and uniformly from the grid, ``(n, 5)`` int64."""
    n = check_positive_int(n, "n")
    cols = [torch.randint(0, k, (n,), generator=generator) for k in SHAPES2D_SIZES]
    return torch.stack(cols, dim=1)


def _inside(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Membership of shape-frame points ``(u, v)`` (unit radius, ``v`` up) in each shape."""
    square = torch.maximum(u.abs(), v.abs()) <= 0.8  # half side 0.8: corners at 1.13
    ellipse = u**2 + (v / 0.6) ** 2 <= 1.0
    # heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, which spans about [-1.14, 1.14] x
    # [-1, 1.25]: shrink by 1.15 and centre it vertically
    hu, hv = 1.15 * u, 1.15 * v + 0.12
    heart = (hu**2 + hv**2 - 1.0) ** 3 - hu**2 * hv**3 <= 0.0
    s = shape[:, None, None]
    return torch.where(s == 0, square, torch.where(s == 1, ellipse, heart))


def render_shapes2d(factors: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Draw the images of given factor indices.

    Args:
        factors: ``(n, 5)`` integer indices, columns as :data:`SHAPES2D_FACTORS`, each in
            ``[0, SHAPES2D_SIZES[j])``.
        size: image side in pixels (>= 8; 32 or 64 as dSprites).

    Returns:
        ``(n, 1, size, size)`` float32 images in ``{0, 1}``.
    """
    size = check_positive_int(size, "size")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    f = torch.as_tensor(factors)
    if f.ndim != 2 or f.shape[1] != len(SHAPES2D_SIZES) or f.dtype.is_floating_point:
        raise ValueError(
            f"factors must be an integer tensor of shape (n, {len(SHAPES2D_SIZES)}) with "
            f"columns {SHAPES2D_FACTORS}; got {tuple(f.shape)} {f.dtype}"
        )
    high = torch.tensor(SHAPES2D_SIZES)
    if (f < 0).any() or (f >= high).any():
        raise ValueError(f"factor indices must lie in [0, size) with sizes {SHAPES2D_SIZES}")
    f = f.long()
    out = torch.empty(len(f), 1, size, size)
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres in [0, 1]
    for start in range(0, len(f), _CHUNK):
        c = f[start : start + _CHUNK].float()
        radius = (0.5 + 0.5 * c[:, 1] / (SHAPES2D_SIZES[1] - 1)) * _RADIUS
        angle = c[:, 2] * (math.pi / 2) / SHAPES2D_SIZES[2]
        cx = 0.25 + 0.5 * c[:, 3] / (SHAPES2D_SIZES[3] - 1)
        cy = 0.25 + 0.5 * c[:, 4] / (SHAPES2D_SIZES[4] - 1)
        dx = (centres[None, None, :] - cx[:, None, None]) / radius[:, None, None]
        dy = (cy[:, None, None] - centres[None, :, None]) / radius[:, None, None]  # row down
        cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # rotate the frame by -angle
        out[start : start + _CHUNK, 0] = _inside(f[start : start + _CHUNK, 0], u, v).float()
    return out


def make_shapes2d(n: int, seed: int = 0, size: int = 32) -> Shapes2D:
    """``n`` images with factors drawn uniformly from the grid by a generator seeded ``seed``."""
    factors = sample_shapes2d_factors(n, torch.Generator().manual_seed(int(seed)))
    return Shapes2D(x=render_shapes2d(factors, size), factors=factors)
