"""Periodic sample plots of the training loop (its progress output is ``progress.py``)."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from probpath.core.serialization import atomic_write_bytes

__all__ = ["plot_run_samples", "save_sample_plot"]


def save_sample_plot(samples: torch.Tensor, event_shape, path: Path, step: int) -> None:
    """Write a PNG of ``samples`` (probpath.plotting when present, a plain figure otherwise)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    title = f"samples at step {step}"
    try:
        from probpath.plotting import plot_samples
    except ImportError:
        plot_samples = None
    if plot_samples is not None:
        plot_samples(ax, samples, tuple(event_shape), title)
    else:
        _plain_plot(ax, samples, tuple(event_shape), title)

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def _plain_plot(ax, samples: torch.Tensor, event_shape: tuple, title: str) -> None:
    if len(event_shape) == 3:
        c, h, w = event_shape
        k = min(len(samples), 64)
        cols = math.ceil(math.sqrt(k))
        rows = math.ceil(k / cols)
        grid = torch.zeros(c, rows * h, cols * w)
        for i in range(k):
            r, q = divmod(i, cols)
            grid[:, r * h : (r + 1) * h, q * w : (q + 1) * w] = samples[i]
        img = grid.permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if c == 1 else img.clip(0, 1), cmap="gray")
        ax.axis("off")
    else:
        flat = samples.reshape(len(samples), -1).numpy()
        ys = flat[:, 1] if flat.shape[1] > 1 else np.zeros(len(flat))
        ax.scatter(flat[:, 0], ys, s=3, alpha=0.6)
    ax.set_title(title)


def plot_run_samples(run) -> None:
    """Sample the run's model (its EMA copy if any) and save ``samples/step_NNNNNN.png``;
    a failed plot warns and never stops training."""
    if not run.write:
        return
    model = run.ema.model if run.ema is not None else run.model
    was_training = model.training
    model.eval()
    n = run.cfg.n_plot_samples
    gen = torch.Generator(device=run.device).manual_seed(run.cfg.seed)
    cond = None
    if run.conditional:
        k = max(1, int(run.data.num_classes or int(run.y.max()) + 1))
        cond = torch.arange(n, device=run.device) % k
    devices = [run.device] if run.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            samples = model.sample(n, cond=cond, generator=gen)
        path = run.run_dir / "samples" / f"step_{run.step:06d}.png"
        save_sample_plot(samples.detach().float().cpu(), run.event_shape, path, run.step)
    except Exception as exc:  # a plot must never kill a training run
        warnings.warn(f"sample plot at step {run.step} failed: {exc!r}", stacklevel=2)
    finally:
        model.train(was_training)
