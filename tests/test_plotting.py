"""Plotting writes real PNGs of the expected size, atomically."""

from __future__ import annotations

import os

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from probpath.data import Dataset, make_toy
from probpath.plotting import (
    image_grid,
    plot_density,
    plot_samples,
    plot_trajectories,
    samples_figure,
    save_figure,
)


def test_samples_figure_2d_writes_png_of_the_right_size(tmp_path):
    data = make_toy("moons", 300, seed=0)
    out = samples_figure(
        {"a": make_toy("moons", 200, seed=1), "b": torch.randn(100, 2)}, data, tmp_path / "s.png"
    )
    img = mpimg.imread(out)
    assert img.shape[:2] == (300, 900)  # 3 panels of 3 x 3 inches at 100 dpi
    assert img[..., :3].std() > 0  # something was drawn


def test_samples_figure_images_and_pca(tmp_path):
    imgs = Dataset(x=torch.rand(20, 1, 8, 8) * 16, value_range=(0.0, 16.0))
    out = samples_figure({"model": torch.rand(16, 1, 8, 8) * 16}, imgs, tmp_path / "i.png")
    assert mpimg.imread(out).shape[:2] == (300, 600)
    vec = torch.randn(50, 5)
    out = samples_figure({"m": torch.randn(40, 5)}, vec, tmp_path / "v.png", panel_size=2.0)
    assert mpimg.imread(out).shape[:2] == (200, 400)


def test_plot_density_evaluates_the_whole_grid():
    calls = []

    def log_prob(x):
        calls.append(x.shape)
        return -0.5 * x.pow(2).sum(1)

    fig = Figure()
    ax = fig.subplots()
    plot_density(ax, log_prob, make_toy("8gaussians", 100, seed=0), n_grid=30, batch_size=500)
    assert sum(s[0] for s in calls) == 900 and all(s[1] == 2 for s in calls)
    assert len(ax.collections) > 0
    with pytest.raises(ValueError, match="2-D densities"):
        plot_density(ax, log_prob, torch.zeros(5, 3))


def test_plot_trajectories_and_samples_accept_lists_and_1d():
    fig = Figure()
    a1, a2 = fig.subplots(1, 2)
    traj = [torch.randn(10, 2) * (1 - t) for t in torch.linspace(0, 1, 5)]
    plot_trajectories(a1, traj)
    assert len(a1.lines) == 10
    with pytest.raises(ValueError, match=r"shape \(T, n, 2\)"):
        plot_trajectories(a1, torch.zeros(5, 3))
    plot_samples(a2, torch.randn(50, 1), title="1-D")
    assert a2.get_title() == "1-D" and len(a2.patches) > 0


def test_image_grid_layout():
    grid = image_grid(torch.rand(5, 1, 2, 3))
    # 3 columns x 2 rows of 2x3 images with 1-pixel borders
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1)
    assert grid.min() >= 0 and grid.max() <= 1
    assert image_grid(torch.rand(4, 3, 2, 2), value_range=(0, 1)).shape == (7, 7, 3)
    diverged = torch.rand(4, 1, 2, 2)
    diverged[0, 0, 0, 0] = float("nan")
    assert np.isfinite(image_grid(diverged)).all()


def test_save_figure_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "f.png"
    fig = Figure(figsize=(1, 1))
    fig.subplots().plot([0, 1], [0, 1])
    save_figure(fig, path)
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    fig2 = Figure(figsize=(2, 2))
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig2, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]  # no temp file left
