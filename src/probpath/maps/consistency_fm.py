"""Consistency flow matching (Yang et al. 2024, the survey's [56]): velocity consistency.

The time axis is cut into segments ``0 = b_0 < b_1 < ... < b_K = 1``. Inside segment
``(b_k, b_{k+1}]`` a velocity network defines the straight-line map to the segment's data-side
end, ``f(x_t, t) = x_t - (t - b_k) v(x_t, t)``; consistency flow matching asks ``f`` and ``v`` to
agree between two nearby times ``t > t' = max(t - dt, b_k)`` of the same interpolation
``x_t = (1 - t) x0 + t eps`` (their Eq. 6 and 10, "multi-segment")::

    |f(x_t, t) - f^-(x_t', t')|^2 + alpha |v(x_t, t) - v^-(x_t', t')|^2,

with the target network ``^-`` the online network under ``stop_grad`` (the reference code's
choice; an EMA with ``target_decay > 0`` is optional). Sampling takes one step per segment
(``K`` NFE): ``x_{b_k} = x_{b_{k+1}} - (b_{k+1} - b_k) v(x_{b_{k+1}}, b_{k+1})``.

Boundary: the consistency targets alone carry the exact end point ``f(x_{b_k}, b_k) = x_{b_k}``
into a segment only one gap ``dt`` per hop (``(1 / K) / dt`` hops: 50 for ``dt = 0.01``, 5
for the default 0.1, which suits budgets of ~10^4 steps).
The authors' code therefore replaces the target by the interpolation point at the segment's
end, ``x_{b_k} = (1 - b_k) x0 + b_k eps`` (same ``eps``), for pairs whose near time lies within
``boundary`` of the data end (their ``boundary = 0.9`` in data-at-1 time is ``0.1`` here),
and drops the velocity term there and within ``dt`` of a segment end. Near the data that is a
direct regression of ``f`` on ``x0`` (the denoiser ``E[x0 | x_t]``), which anchors the chain.

Time: the paper's ``t`` runs noise (0) to data (1); here ``t = 1`` is noise (``t_paper = 1 - t``,
velocities flip sign), so segments are mapped to their lower end.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from probpath.core.broadcast import append_dims
from probpath.core.model import Capabilities
from probpath.core.validation import check_positive_int
from probpath.maps.base import MapModel
from probpath.paths.affine import AffinePath
from probpath.sampling.path_model import build_path_network

__all__ = ["ConsistencyFlowMatching"]


class ConsistencyFlowMatching(MapModel):
    """Consistency-FM with ``segments`` equal segments; ``sample`` takes one step per segment.

    Args:
        event_shape: shape of one sample.
        segments: number of segments ``K`` (the paper's 2-segment default).
        network: options of the velocity :class:`~probpath.nn.TimeMLP`.
        delta: the time gap ``dt`` of the consistency pairs; a pair whose near time falls
            below the segment start regresses on the exact start point. Larger gaps shorten
            the chain but widen the anchored band ``t <= boundary + dt``, where ``f`` learns
            the blurred ``E[x0 | x_t]``. Chosen on digits (seeds 0-1): at ~3k steps FD 2580 /
            215 / 118 / 75 for 0.01 / 0.05 / 0.1 / 0.2; at ~15k steps (75 CPU-s) the samples'
            per-pixel spread is 0.77 / 0.86 / 0.92 of the data's for 0.2 / 0.1 / 0.05, and 0.1
            is the one that beats the Gaussian baseline on (nearly) every metric of both seeds.
        alpha: weight of the velocity-consistency term.
        boundary: pairs with ``t - dt <= boundary`` regress on the exact segment end (0: none).
        target_decay: EMA decay of the target network (0: ``stop_grad`` of the online one).
    """

    capabilities: ClassVar[Capabilities] = Capabilities(route="velocity", section="§3.3")

    def __init__(
        self,
        event_shape: tuple[int, ...],
        segments: int = 2,
        network: dict[str, Any] | None = None,
        delta: float = 0.1,
        alpha: float = 1e-5,
        boundary: float = 0.1,
        target_decay: float = 0.0,
    ):
        event_shape = tuple(event_shape)
        super().__init__(
            event_shape,
            AffinePath("linear"),
            build_path_network(event_shape, 0, network),
            internal_teacher=False,
            target_decay=target_decay,
        )
        self.segments = check_positive_int(segments, "segments")
        if not 0.0 < delta < 1.0 / self.segments:
            raise ValueError(f"delta must be in (0, 1 / segments), got {delta!r}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if not 0.0 <= boundary < 1.0:
            raise ValueError(f"boundary must be in [0, 1), got {boundary!r}")
        self.delta, self.alpha, self.boundary = float(delta), float(alpha), float(boundary)

    @property
    def fixed_nfe(self) -> int:
        return self.segments

    def segment_start(self, t: torch.Tensor) -> torch.Tensor:
        """``b_k`` of the segment ``(b_k, b_{k+1}]`` holding ``t`` (``(batch,)``)."""
        k = torch.clamp(torch.ceil(t * self.segments) - 1, min=0)
        return k / self.segments

    def segment_map(self, x: torch.Tensor, t: torch.Tensor, network=None):
        """``(f(x, t), v(x, t))`` with ``f = x - (t - b_k) v``."""
        v = (network or self.network)(x, t)
        return x - append_dims(t - self.segment_start(t), x) * v, v

    def map_loss(self, x0: torch.Tensor, cond=None) -> torch.Tensor:
        n = len(x0)
        t = 1.0 - torch.rand(n, device=x0.device, dtype=x0.dtype)  # (0, 1]
        start = self.segment_start(t)
        t_near = torch.maximum(t - self.delta, start)
        eps = torch.randn_like(x0)
        x_t = self.path.sample(x0, t, eps=eps).x_t
        x_near = self.path.sample(x0, t_near, eps=eps).x_t
        f, v = self.segment_map(x_t, t)
        with torch.no_grad():
            # the target's segment is t's (t_near may sit on its lower end b_k, where f = x)
            v_near = self.target_network()(x_near, t_near)
            f_near = x_near - append_dims(t_near - start, x_near) * v_near
            anchored = t_near <= self.boundary
            x_end = self.path.sample(x0, start, eps=eps).x_t
            f_near = torch.where(append_dims(anchored, f_near), x_end, f_near)
            # the velocity term only away from the anchor and from the segment end
            keep_v = (~anchored & (t - start > 1.01 * self.delta)).to(x0.dtype)
        flat = (f - f_near).reshape(n, -1).pow(2).mean(1)
        return flat + self.alpha * keep_v * (v - v_near).reshape(n, -1).pow(2).mean(1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        x_init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One step per segment from ``t = 1`` (``segments`` NFE)."""
        x = self.start(n, cond, generator, x_init)
        n = len(x)
        for k in range(self.segments, 0, -1):
            t = self.expand(k / self.segments, n)
            x, _ = self.segment_map(x, t)
        return self._record(x, self.segments)
