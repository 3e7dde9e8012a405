"""Data sets: 2-D toys, Gaussian mixtures with known parameters, digits and user files.

``load_dataset(name_or_path)`` is the one entry point used by the CLI and ``compare``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch

from probpath.data.dataset import Dataset, rescale
from probpath.data.digits import load_digits
from probpath.data.files import load_file
from probpath.data.shapes import (
    SHAPES2D_FACTORS,
    SHAPES2D_SIZES,
    Shapes2D,
    make_shapes2d,
    render_shapes2d,
    sample_shapes2d_factors,
)
from probpath.data.toy import (
    TOY_NAMES,
    MixtureParams,
    MixtureSample,
    demo_gaussian_mixture,
    make_gaussian_mixture,
    make_toy,
    random_gaussian_mixture,
)

__all__ = [
    "Dataset",
    "MixtureParams",
    "MixtureSample",
    "SHAPES2D_FACTORS",
    "SHAPES2D_SIZES",
    "Shapes2D",
    "TOY_NAMES",
    "available_datasets",
    "demo_gaussian_mixture",
    "load_dataset",
    "load_digits",
    "load_file",
    "make_gaussian_mixture",
    "make_shapes2d",
    "make_toy",
    "random_gaussian_mixture",
    "render_shapes2d",
    "rescale",
    "sample_shapes2d_factors",
]

DEFAULT_TOY_SIZE = 10_000


def available_datasets() -> list[str]:
    """Names :func:`load_dataset` knows (besides file paths)."""
    return [*TOY_NAMES, "gmm", "digits", "shapes2d"]


def _subsample(data: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None:
        return data
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    if n > len(data):
        raise ValueError(f"n={n} but {data.name!r} has only {len(data)} samples; lower n")
    if n == len(data):
        return data
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(perm[:n])


def load_dataset(
    name_or_path: str | Path, *, n: int | None = None, seed: int = 0, labels=None, **kwargs
) -> Dataset:
    """Load a data set by name or from a file.

    Args:
        name_or_path: a toy name (``moons``, ``circles``, ``8gaussians``, ``25gaussians``,
            ``checkerboard``, ``swissroll``, ``2spirals``, ``pinwheel``, ``rings``), ``gmm``
            (the known mixture :func:`demo_gaussian_mixture`, with component labels),
            ``digits`` (scikit-learn's 8x8 digits), ``shapes2d`` (dSprites-like binary
            images with known factors, :mod:`probpath.data.shapes`; ``y`` is the shape
            class, the full factor matrix of the same draw is
            ``make_shapes2d(n, seed, size).factors``), or a path (.npy, .npz, .csv, IDX, a
            folder of images; see :mod:`probpath.data.files`).
        n: number of samples. Synthetic sets draw ``n`` (default 10,000); real data keep a
            seeded random subset of ``n`` rows (default: all).
        seed: seed of the synthetic draw or of the subset.
        labels: for files, an optional labels array or file (one integer per sample).
        **kwargs: ``gmm`` accepts ``dim`` (default 2) and ``k`` (default 6); ``shapes2d``
            accepts ``size`` (image side, default 32).

    Returns:
        A float32 :class:`Dataset`.

    Example:
        >>> load_dataset("moons", n=100).x.shape
        torch.Size([100, 2])
    """
    name = str(name_or_path)
    allowed = {"gmm": {"dim", "k"}, "shapes2d": {"size"}}.get(name, set())
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(
            f"load_dataset({name!r}) got unexpected option(s) {unknown}"
            + (f"; it accepts {sorted(allowed)}" if allowed else "")
        )
    if labels is not None and name in available_datasets():
        raise ValueError(f"labels= is for files; {name!r} brings its own labels (or none)")
    if name in TOY_NAMES:
        size = DEFAULT_TOY_SIZE if n is None else n
        x = make_toy(name, size, seed=seed)
        return Dataset(x=x, name=name)
    if name == "gmm":
        params = demo_gaussian_mixture(kwargs.get("dim", 2), kwargs.get("k", 6))
        size = DEFAULT_TOY_SIZE if n is None else n
        draw = make_gaussian_mixture(
            size, *params, torch.Generator().manual_seed(seed), dtype=torch.float32
        )
        return Dataset(x=draw.x, y=draw.labels, name="gmm", num_classes=len(params.weights))
    if name == "shapes2d":
        count = DEFAULT_TOY_SIZE if n is None else n
        draw = make_shapes2d(count, seed=seed, size=kwargs.get("size", 32))
        return Dataset(
            x=draw.x,
            y=draw.factors[:, 0].clone(),
            name="shapes2d",
            value_range=(0.0, 1.0),
            discrete=True,
            n_levels=2,
            num_classes=SHAPES2D_SIZES[0],
        )
    if name == "digits":
        return _subsample(load_digits(), n, seed)
    path = Path(name_or_path)
    if not path.exists():
        close = difflib.get_close_matches(name, available_datasets(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown data set {name!r}: not a known name and no such file.{hint} Known "
            f"names: {', '.join(available_datasets())}; or pass a path to a .npy, .npz, "
            ".csv, IDX file or image folder"
        )
    return _subsample(load_file(path, labels=labels), n, seed)
