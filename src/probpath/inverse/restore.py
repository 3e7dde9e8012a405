"""Restore images with a trained path model: what ``probpath restore`` runs.

The observation file holds degraded images in the data's own units (``.npy``) or 8-bit
pictures (``.png``, mapped linearly onto the data's value range). The operator acts on the
image; a vector model (images flattened) sees it through :class:`Reshaped`. Data units map
to the model's by ``x_m = scale x + shift`` (:class:`~probpath.compare.space.DataSpace`'s
fields, duck-typed here); every operator here has rows summing to 1 (``A 1 = 1``), so the
observation maps the same way and ``sigma_y`` scales by ``scale``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from probpath.inverse.operators import LinearOperator, make_operator
from probpath.inverse.solvers import solve

__all__ = ["Reshaped", "restore_file", "RESTORE_TASKS"]

RESTORE_TASKS = ("inpaint", "superres", "deblur", "denoise")


class Reshaped(LinearOperator):
    """``operator`` seen by a model whose samples have ``event_shape`` (same size)."""

    def __init__(self, operator: LinearOperator, event_shape):
        super().__init__(event_shape, operator.sigma_y)
        if math.prod(self.event_shape) != operator.dim:
            raise ValueError(f"event_shape {event_shape} must hold {operator.dim} values")
        self.op = operator

    def forward(self, x):
        return self.op.forward(x.reshape(len(x), *self.op.event_shape))

    def adjoint(self, y):
        return self.op.adjoint(y).reshape(len(y), *self.event_shape)

    def pinv(self, y):
        return self.op.pinv(y).reshape(len(y), *self.event_shape)


def _read(path: Path, value_range) -> torch.Tensor:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return torch.as_tensor(np.load(path, allow_pickle=False), dtype=torch.float32)
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as img:
            pixels = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        lo, hi = value_range if value_range is not None else (0.0, 1.0)
        return torch.as_tensor(lo + (hi - lo) * pixels)
    raise ValueError(f"--input {path} must be a .npy array or a .png image")


def _write(path: Path, x: torch.Tensor, value_range) -> None:
    from probpath.core.serialization import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    if path.suffix.lower() == ".npy":
        np.save(buf, x.numpy().astype(np.float32), allow_pickle=False)
    else:
        from PIL import Image

        lo, hi = value_range if value_range is not None else (float(x.min()), float(x.max()))
        img = ((x - lo) / max(hi - lo, 1e-12)).clamp(0, 1)
        tiles = torch.cat(list(img[:, 0]), dim=1)  # images side by side, first channel
        Image.fromarray((tiles.numpy() * 255).round().astype(np.uint8)).save(buf, "PNG")
    atomic_write_bytes(path, buf.getvalue())


def restore_file(
    model,
    task: str,
    input: str | Path,
    out: str | Path,
    *,
    space=None,
    method: str = "ddnm",
    sigma_y: float = 0.0,
    steps: int = 100,
    seed: int = 0,
    **options,
) -> torch.Tensor:
    """Restore the images of ``input`` with ``model`` and write them to ``out``.

    Args:
        model: a trained path model (:class:`~probpath.sampling.path_model.PathModel`).
        task: one of :data:`RESTORE_TASKS`; the observation is ``A x`` of the input image
            (``superres`` also accepts the low-resolution image itself).
        input, out: ``.npy`` (``(N, C, H, W)``, ``(C, H, W)`` or ``(H, W)``, data units) or
            ``.png`` (one grey image).
        space: the run's data space (``event_shape``, ``value_range``, ``scale``, ``shift``);
            ``None``: the model's own units and shape.
        method: a solver of :data:`~probpath.inverse.solvers.SOLVERS`.
        sigma_y: the observation noise level in data units (denoising needs it > 0).
        steps, seed, options: solver settings.

    Returns:
        The restorations ``(N, *event_shape)`` in data units.
    """
    if task not in RESTORE_TASKS:
        raise ValueError(f"task must be one of {', '.join(RESTORE_TASKS)}; got {task!r}")
    out = Path(out)
    if out.suffix.lower() not in (".npy", ".png"):
        raise ValueError(f"--out {out} must end in .npy or .png")
    event = tuple(space.event_shape) if space is not None else tuple(model.event_shape)
    vr = getattr(space, "value_range", None)
    scale, shift = (space.scale, space.shift) if space is not None else (1.0, 0.0)
    x = _read(Path(input), vr)
    while x.ndim < len(event) + 1:
        x = x[None]
    image = make_operator(task, event, sigma_y=sigma_y * scale)
    if task == "superres" and tuple(x.shape[1:]) != event:
        y_data = x  # already the low-resolution observation
    elif tuple(x.shape[1:]) != event:
        raise ValueError(f"--input images have shape {tuple(x.shape[1:])}; the model's is {event}")
    else:
        y_data = image.forward(x)
    op = Reshaped(image, model.event_shape) if tuple(model.event_shape) != event else image
    y = (scale * y_data + shift).to(model.dtype)
    gen = torch.Generator().manual_seed(seed)
    if vr is not None:  # clamp x0_hat to the data range (stabilises ΠGDM / DPS on eps-networks)
        low, high = sorted(scale * v + shift for v in vr)
        options.setdefault("clip_x0", (low, high))
    res = solve(method, model, op, y, steps=steps, generator=gen, **options)
    restored = ((res.x.detach().cpu().float() - shift) / scale).reshape(len(y), *event)
    _write(out, restored, vr)
    return restored
