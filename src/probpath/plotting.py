"""Figures of samples, densities and trajectories (matplotlib; never opens a window).

Figures are built with :class:`matplotlib.figure.Figure` directly, not ``pyplot``: they are
rendered by the Agg canvas when saved, no GUI backend or global figure state is involved
(and the user's backend is left alone). :func:`save_figure` writes atomically. The plot
functions also draw on any ``Axes`` a user made with ``pyplot``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from probpath.core.serialization import atomic_write_bytes
from probpath.data.dataset import Dataset

__all__ = [
    "image_grid",
    "plot_samples",
    "plot_density",
    "plot_trajectories",
    "figure_bytes",
    "save_figure",
    "samples_figure",
]


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def image_grid(
    images, value_range: tuple[float, float] | None = None, ncols: int | None = None
) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images (``C`` in 1, 3) into one ``(rows*H, cols*W[, 3])`` array
    in ``[0, 1]``, with a one-pixel border. Values are clipped to ``value_range``
    (default: the batch's finite min and max); NaN pixels are drawn black."""
    a = _numpy(images)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {a.shape}")
    finite = a[np.isfinite(a)]
    if value_range is not None:
        low, high = value_range
    else:
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    # non-finite pixels (a diverged model) are drawn black rather than breaking the figure
    a = np.nan_to_num(np.clip((a - low) / max(float(high) - float(low), 1e-12), 0.0, 1.0))
    n, c, h, w = a.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.ones((c, nrows * (h + 1) + 1, ncols * (w + 1) + 1))
    for i in range(n):
        r, q = divmod(i, ncols)
        grid[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = a[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def _pca_basis(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:2].T


def plot_samples(
    ax: Axes,
    x,
    event_shape: Sequence[int] | None = None,
    title: str | None = None,
    *,
    lim: tuple[float, float] | None = None,
    value_range: tuple[float, float] | None = None,
    projection: tuple[np.ndarray, np.ndarray] | None = None,
    max_points: int = 2000,
    max_images: int = 64,
) -> Axes:
    """Draw samples on ``ax``: a scatter for 2-D data, an image grid for images, a histogram
    for 1-D data, and a PCA scatter (or ``projection = (mean, basis (D, 2))``) otherwise.

    Args:
        ax: matplotlib axes.
        x: ``(N, *event_shape)`` samples (tensor or array).
        event_shape: shape of one sample; default ``x.shape[1:]``.
        title: panel title.
        lim: axis limits ``(low, high)`` of a 2-D scatter (both axes).
        value_range: pixel range of images (clipped), default the batch min/max.
        projection: fixed 2-D projection for vectors of dimension > 2 (to share across panels).
        max_points: at most this many points are drawn; max_images images.
    """
    a = _numpy(x)
    shape = tuple(event_shape) if event_shape is not None else a.shape[1:]
    a = a.reshape(a.shape[0], *shape)
    if len(shape) == 3 and shape[0] in (1, 3):
        ax.imshow(image_grid(a[:max_images], value_range), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
    else:
        v = a.reshape(a.shape[0], -1)[:max_points]
        if v.shape[1] == 1:
            ax.hist(v[:, 0], bins=50, density=True, color="C0", alpha=0.8)
        else:
            if v.shape[1] > 2:
                mean, basis = projection if projection is not None else _pca_basis(v)
                v = (v - mean) @ basis
            ax.scatter(v[:, 0], v[:, 1], s=2, alpha=0.5, linewidths=0)
            if lim is not None:
                ax.set_xlim(*lim)
                ax.set_ylim(*lim)
            ax.set_aspect("equal", adjustable="box")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_density(
    ax: Axes,
    log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
    data=None,
    lim: tuple[float, float] | None = None,
    n_grid: int = 100,
    *,
    dtype: torch.dtype = torch.float32,
    levels: int = 20,
    batch_size: int = 4096,
) -> Axes:
    """Filled contours of ``exp(log_prob_fn(grid))`` over a 2-D square, data on top.

    Args:
        ax: matplotlib axes.
        log_prob_fn: ``(M, 2) tensor -> (M,)`` log-densities (e.g. ``model.log_prob``).
        data: optional ``(N, 2)`` points drawn over the contours (and used for ``lim``).
        lim: ``(low, high)`` of both axes; default the data's range plus a margin, or
            ``(-4, 4)``.
        n_grid: grid points per axis.
        dtype: dtype of the grid passed to ``log_prob_fn``.
    """
    pts = None if data is None else _numpy(data).reshape(len(data), -1)
    if pts is not None and pts.shape[1] != 2:
        raise ValueError(f"plot_density draws 2-D densities; data has {pts.shape[1]} dimensions")
    if lim is None:
        if pts is None:
            lim = (-4.0, 4.0)
        else:
            low, high = float(pts.min()), float(pts.max())
            pad = 0.1 * (high - low) + 1e-3
            lim = (low - pad, high + pad)
    g = torch.linspace(lim[0], lim[1], n_grid, dtype=dtype)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    with torch.no_grad():
        lp = torch.cat(
            [torch.as_tensor(log_prob_fn(c)).reshape(-1) for c in grid.split(batch_size)]
        )
    density = torch.exp(lp.to(torch.float64)).reshape(n_grid, n_grid).cpu().numpy()
    ax.contourf(xx.numpy(), yy.numpy(), np.nan_to_num(density), levels=levels, cmap="viridis")
    if pts is not None:
        ax.scatter(pts[:2000, 0], pts[:2000, 1], s=1, c="white", alpha=0.3, linewidths=0)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal", adjustable="box")
    return ax


def plot_trajectories(ax: Axes, traj, *, max_paths: int = 200) -> Axes:
    """Paths of 2-D particles, e.g. from a sampler's callback.

    Args:
        ax: matplotlib axes.
        traj: ``(T, n, 2)`` tensor/array, or a list of ``T`` tensors of shape ``(n, 2)``.
        max_paths: at most this many particles are drawn.
    """
    if isinstance(traj, list | tuple):
        traj = np.stack([_numpy(t) for t in traj])
    a = _numpy(traj)
    if a.ndim != 3 or a.shape[2] != 2:
        raise ValueError(f"traj must have shape (T, n, 2), got {a.shape}")
    a = a[:, :max_paths]
    ax.plot(a[:, :, 0], a[:, :, 1], color="0.5", alpha=0.3, linewidth=0.5)
    ax.scatter(a[0, :, 0], a[0, :, 1], s=3, c="C0", label="start", zorder=3)
    ax.scatter(a[-1, :, 0], a[-1, :, 1], s=3, c="C3", label="end", zorder=3)
    ax.legend(loc="upper right", fontsize=7)
    ax.set_aspect("equal", adjustable="box")
    return ax


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 100) -> Path:
    """Render ``fig`` to ``path`` atomically (temp file, fsync, ``os.replace``).

    The format follows the suffix (``.png``, ``.pdf``, ``.svg``); a PNG is exactly
    ``figsize * dpi`` pixels (use a constrained layout rather than a tight bounding box).
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    return atomic_write_bytes(path, figure_bytes(fig, fmt, dpi=dpi))


def figure_bytes(fig: Figure, fmt: str = "png", *, dpi: int = 100) -> bytes:
    """``fig`` rendered in ``fmt`` (``"png"``, ``"svg"``, ...), e.g. to embed in a page."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    return buf.getvalue()


def samples_figure(
    models_samples: Mapping[str, torch.Tensor],
    data: Dataset | torch.Tensor,
    path: str | Path,
    *,
    event_shape: Sequence[int] | None = None,
    panel_size: float = 3.0,
) -> Path:
    """One row of panels — the data, then each model's samples — saved to ``path``.

    2-D data share the data's axis limits; images share the data's value range; other
    vectors are projected on the data's first two principal axes.

    Args:
        models_samples: ``{model name: (n, *event_shape) samples}``.
        data: the reference data (a :class:`Dataset` or a tensor).
        path: output file (``.png`` ...).
        event_shape: shape of one sample; default the data's.
        panel_size: width and height of one panel in inches (100 pixels per inch).

    Returns:
        The path written.
    """
    if not isinstance(models_samples, Mapping):
        raise ValueError("models_samples must be a dict {name: samples}")
    if isinstance(data, Dataset):
        x, value_range, name = data.x, data.value_range, data.name
    else:
        x, value_range, name = data, None, "data"
    a = _numpy(x)
    shape = tuple(event_shape) if event_shape is not None else a.shape[1:]
    a = a.reshape(a.shape[0], *shape)
    flat = a.reshape(len(a), -1)
    is_image = len(shape) == 3 and shape[0] in (1, 3)
    if is_image and value_range is None:
        value_range = (float(a.min()), float(a.max()))
    lim = projection = None
    if not is_image and flat.shape[1] == 2:
        low, high = float(flat.min()), float(flat.max())
        pad = 0.1 * (high - low) + 1e-3
        lim = (low - pad, high + pad)
    elif not is_image and flat.shape[1] > 2:
        projection = _pca_basis(flat)
    panels = {name: a, **{k: _numpy(v) for k, v in models_samples.items()}}
    fig = Figure(figsize=(panel_size * len(panels), panel_size), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, s) in zip(axes, panels.items()):
        plot_samples(ax, s, shape, title, lim=lim, value_range=value_range, projection=projection)
    return save_figure(fig, path)
