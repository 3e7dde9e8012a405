"""Shortcut models (Frans et al. 2024): a velocity conditioned on the step size ``d``.

``s(x_t, t, d)`` is the slope of the jump ``x_{t-d} = x_t - d s(x_t, t, d)`` towards the data.
At ``d = 0`` it is the instantaneous velocity and is trained by flow matching (Eq. 62, with
the path's conditional velocity, or a teacher's); for ``d > 0`` the self-consistency target
says that one jump of ``2d`` equals two jumps of ``d`` (their Eq. 5)::

    s(x_t, t, 2d) <- stop_grad( (s(x_t, t, d) + s(x'_{t-d}, t - d, d)) / 2 ),
    x'_{t-d} = x_t - d s(x_t, t, d),

with ``2d`` a power of two from ``1 / max_steps`` to 1 (at the finest level the network is
queried at ``d = 0``) and ``t`` on the grid of multiples of ``2d``; midpoints and targets are
clipped (``clip``, as the reference code). A fraction ``consistency_fraction`` of each batch
gets the self-consistency target.

Time: the paper runs ``t = 0`` noise to ``t = 1`` data; here ``t = 1`` is noise and ``x`` moves
to smaller ``t`` (``t_paper = 1 - t``; their ``s`` is our ``-s`` up to that flip).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from probpath.core.broadcast import append_dims
from probpath.core.model import Capabilities
from probpath.core.validation import check_positive_int, check_probability
from probpath.maps.base import MapModel
from probpath.maps.networks import TwoTimeMLP
from probpath.paths.affine import AffinePath

__all__ = ["ShortcutModel", "shortcut_target"]


def shortcut_target(
    slope_fn: Callable,
    x_t: torch.Tensor,
    t: torch.Tensor,
    d: torch.Tensor,
    clip: float | None = None,
    d_query: torch.Tensor | None = None,
):
    """Two jumps of ``d`` as one slope: ``(s(x_t, t, d) + s(x', t - d, d)) / 2`` with
    ``x' = x_t - d s(x_t, t, d)`` (Frans et al. 2024, Eq. 5) ``(batch, *event)``.

    ``clip``: clamp ``x'`` and the target to ``[-clip, clip]`` (the reference code clips both
    to 4 for data scaled to ``[-1, 1]``): without it an untrained network's large slopes send
    ``x'`` off the data, where the network extrapolates, and the bootstrap compounds that
    over the ``log2(max_steps)`` levels until the targets overflow. ``d_query``: the step size
    the network is asked at (default ``d``; the finest level asks the ``d = 0`` head)."""
    q = d if d_query is None else d_query
    s1 = slope_fn(x_t, t, q)
    x_mid = x_t - append_dims(d, x_t) * s1
    if clip is not None:
        x_mid = x_mid.clamp(-clip, clip)
    target = 0.5 * (s1 + slope_fn(x_mid, t - d, q))
    return target if clip is None else target.clamp(-clip, clip)


class ShortcutModel(MapModel):
    """Shortcut model on the linear path; ``sample(n, steps=k)`` takes ``k`` jumps of ``1 / k``.

    Args:
        event_shape: shape of one sample (vectors).
        network: options of the :class:`~probpath.maps.networks.TwoTimeMLP` on ``(t, d)``.
        max_steps: the finest step ``1 / max_steps`` (a power of two; the paper's 128).
        consistency_fraction: rows of each batch with the self-consistency target.
        teacher: a run directory of a path model whose velocity is the ``d = 0`` target.
        clip: bound of the bootstrap's midpoints and targets (:func:`shortcut_target`;
            ``None``: no clipping).
        steps: default number of sampling steps.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="velocity", section="§3.3", one_step=True
    )

    def __init__(
        self,
        event_shape: tuple[int, ...],
        network: dict[str, Any] | None = None,
        max_steps: int = 128,
        consistency_fraction: float = 0.25,
        teacher: str | None = None,
        clip: float | None = 4.0,
        steps: int = 1,
    ):
        event_shape = tuple(event_shape)
        if len(event_shape) != 1:
            raise ValueError(f"ShortcutModel takes vectors (D,); got event_shape {event_shape}")
        max_steps = check_positive_int(max_steps, "max_steps")
        if max_steps < 2 or max_steps & (max_steps - 1):
            raise ValueError(f"max_steps must be a power of two >= 2, got {max_steps}")
        super().__init__(
            event_shape,
            AffinePath("linear"),
            TwoTimeMLP(event_shape[0], **(network or {})),
            teacher=teacher,
            internal_teacher=False,
        )
        self.max_steps = max_steps
        self.fraction = check_probability(consistency_fraction, "consistency_fraction")
        if clip is not None and not clip > 0:
            raise ValueError(f"clip must be positive or None, got {clip!r}")
        self.clip = clip
        self.default_steps = self.check_steps(steps)

    def slope(self, x: torch.Tensor, t: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """``s(x, t, d)`` ``(batch, *event)``; ``d = 0`` is the instantaneous velocity."""
        return self.network(x, t, d)

    def flow_matching_loss(self, x0: torch.Tensor) -> torch.Tensor:
        """``|s(x_t, t, 0) - v|^2`` per row: CFM (Eq. 62), or a teacher's velocity ``v``."""
        t = torch.rand(len(x0), device=x0.device, dtype=x0.dtype)
        s = self.path.sample(x0, t)
        v = s.velocity
        if self.teacher is not None or self._teacher_field is not None:
            with torch.no_grad():
                v = self.teacher_field.velocity(s.x_t, t)
        pred = self.slope(s.x_t, t, torch.zeros_like(t))
        return (pred - v).reshape(len(x0), -1).pow(2).mean(1)

    def self_consistency_loss(self, x0: torch.Tensor) -> torch.Tensor:
        """``|s(x_t, t, 2d) - (s(x_t, t, d) + s(x', t - d, d)) / 2|^2`` per row (target
        under stop-grad)."""
        n = len(x0)
        # 2d = 2^-j for j = 0 .. log2(max_steps); the finest 2d = 1 / max_steps is built from
        # two half steps of the d = 0 head (Frans et al.: the smallest step queries d = 0)
        levels = int(math.log2(self.max_steps)) + 1
        j = torch.randint(0, levels, (n,), device=x0.device)
        two_d = torch.pow(2.0, -j.to(x0.dtype))
        # t = 2d * m with m in {1, ..., 1 / 2d}: a point of the 2d-grid, above t = 0
        m = torch.floor(torch.rand(n, device=x0.device, dtype=x0.dtype) / two_d) + 1.0
        t = (two_d * m).clamp(max=1.0)
        d = 0.5 * two_d
        x_t = self.path.sample(x0, t).x_t
        with torch.no_grad():
            finest = two_d <= 1.0 / self.max_steps
            query = torch.where(finest, torch.zeros_like(d), d)
            target = shortcut_target(self.slope, x_t, t, d, self.clip, query)
        pred = self.slope(x_t, t, two_d)
        return (pred - target).reshape(n, -1).pow(2).mean(1)

    def map_loss(self, x0: torch.Tensor, cond=None) -> torch.Tensor:
        k = int(round(self.fraction * len(x0)))
        parts = []
        if k:
            parts.append(self.self_consistency_loss(x0[:k]))
        if k < len(x0):
            parts.append(self.flow_matching_loss(x0[k:]))
        return torch.cat(parts)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        x_init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``steps`` jumps ``x <- x - d s(x, t, d)``, ``d = 1 / steps``, from ``t = 1`` to 0."""
        x = self.start(n, cond, generator, x_init)
        n = len(x)
        steps = self.check_steps(steps or self.default_steps)
        d = 1.0 / steps
        for i in range(steps):
            t = self.expand(1.0 - i * d, n)
            x = x - d * self.slope(x, t, self.expand(d, n))
        return self._record(x, steps)
