"""MeanFlow (Geng et al. 2025): learn the average velocity ``u(x_t, r, t)`` of the flow map.

Along a probability-flow ODE trajectory ``dx/dt = v(x, t)`` the average velocity between
times ``r`` and ``t`` is ``u(x_t, r, t) = (1 / (t - r)) int_r^t v(x_s, s) ds``, so
``x_r = x_t - (t - r) u(x_t, r, t)`` exactly: one network call crosses any interval. Differentiating
``(t - r) u = int_r^t v ds`` in ``t`` gives the MeanFlow identity (their Eq. 6)::

    u(x_t, r, t) = v(x_t, t) - (t - r) d/dt u(x_t, r, t),
    d/dt u = v . grad_x u + d_t u        (total derivative along the trajectory),

whose right-hand side, evaluated with the network under ``stop_grad``, is the regression
target; the total derivative is one Jacobian-vector product of the network with tangent
``(v, 0, 1)`` in ``(x, r, t)`` (``torch.func.jvp``). ``v`` is the path's conditional velocity
(the CFM target), or a teacher field's velocity when one is given. ``u(x, t, t) = v(x, t)``.

The paper's time convention is probpath's (t = 0 data, t = 1 noise, ``z_t = (1 - t) x + t eps``).

Short budgets (issue 14; digits, 40 CPU-s, ~1,500 steps, seed 0; FD in the digits classifier's
features at 1 / 2 NFE, the Gaussian baseline 74.7):

* The time embedding. With DDPM's sinusoidal scale 1000 the features of ``t`` oscillate up to
  1000 rad per unit time, so ``d_t u`` in the jvp is dominated by the embedding's derivative
  and a time seen rarely in training is not interpolated from its neighbours. The paper's
  logit-normal(-0.4, 1) sampler draws ``t > 0.9`` for ~1 % of the pairs, and ``t = 1`` (where
  every sample starts) never: even with ``r = t`` everywhere (plain flow matching) the
  network's 10-step Euler samples had FD 1575. Scale 1000 / 100 / 10 / 1: FD 2613 / 504 /
  303 / 472 at 1 NFE, 1611 / 160 / 98 / 127 at 2 NFE; the default is 10.
* The endpoint share. Drawing 10 % of the pairs at exactly ``(r, t) = (0, 1)`` (the one-step
  query) made 1 NFE worse (FD 2247 vs 303 at scale 10): at the largest gap the target
  ``v - (t - r) d/dt u`` is built from the network's own, still wrong, derivative. This agrees
  with the paper's ablation (Table 1a: 25 % of pairs with ``r != t`` was best; both 0 % and
  100 % were worse) and with Kim et al. 2025 ("Understanding, accelerating, and improving
  MeanFlow training"), who find that large-gap average velocities are learned only after
  the instantaneous and small-gap ones. ``endpoint_share`` stays available, off by default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch.func import jvp

from probpath.core.broadcast import append_dims
from probpath.core.model import Capabilities
from probpath.core.validation import check_probability
from probpath.maps.base import MapModel
from probpath.maps.networks import TwoTimeMLP
from probpath.paths.affine import AffinePath

__all__ = ["MeanFlow", "meanflow_target"]


def meanflow_target(
    u_fn: Callable, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, u_tgt)``: ``u = u_fn(z, r, t)`` and the MeanFlow target
    ``v - (t - r) (v . grad_z u + d_t u)`` (Geng et al. 2025, Eq. 10; the target carries no
    gradient). ``z, v``: ``(batch, *event)``; ``r, t``: ``(batch,)``."""
    u, dudt = jvp(u_fn, (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    target = v - append_dims(t - r, z) * dudt
    return u, target.detach()


class MeanFlow(MapModel):
    """MeanFlow: a network of the average velocity ``u(x, r, t)``; 1 step is
    ``x_0 = x_1 - u(x_1, 0, 1)``.

    Args:
        event_shape: shape of one sample (vectors).
        schedule, schedule_options: the path (the linear path of the paper by default).
        network: options of the :class:`~probpath.maps.networks.TwoTimeMLP` on ``(t, t - r)``
            (``time_scale`` 10 unless given; see the module notes).
        ratio_r_neq_t: fraction of pairs with ``r < t`` (the rest ``r = t``: flow matching).
        endpoint_share: fraction of pairs set to ``(r, t) = (t_min, t_max)``, the pair that
            one-step sampling queries (taken from the ``r < t`` share; 0: the paper's sampler).
        p_mean, p_std: logit-normal time sampling (the paper's ``lognorm(-0.4, 1.0)``).
        adaptive_p, adaptive_c: adaptive loss weight ``1 / (|err|^2 + c)^p`` (stop-grad).
        teacher: a run directory of a path model whose velocity replaces the conditional one.
        steps: default number of sampling steps.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="velocity", section="§3.3", one_step=True
    )

    def __init__(
        self,
        event_shape: tuple[int, ...],
        schedule: str = "linear",
        schedule_options: dict[str, Any] | None = None,
        network: dict[str, Any] | None = None,
        ratio_r_neq_t: float = 0.25,
        endpoint_share: float = 0.0,
        p_mean: float = -0.4,
        p_std: float = 1.0,
        adaptive_p: float = 1.0,
        adaptive_c: float = 1e-3,
        teacher: str | None = None,
        steps: int = 1,
    ):
        event_shape = tuple(event_shape)
        if len(event_shape) != 1:
            raise ValueError(f"MeanFlow takes vectors (D,); got event_shape {event_shape}")
        network_options = {"time_scale": 10.0, **(network or {})}
        super().__init__(
            event_shape,
            AffinePath(schedule, **(schedule_options or {})),
            TwoTimeMLP(event_shape[0], **network_options),
            teacher=teacher,
            internal_teacher=False,
        )
        # saved with the weights: a run trained at another time scale (the default was
        # 1000 before) is refused at load instead of sampling wrongly
        self.register_buffer("time_scale", torch.tensor(float(network_options["time_scale"])))
        self.ratio = check_probability(ratio_r_neq_t, "ratio_r_neq_t")
        self.endpoint_share = check_probability(endpoint_share, "endpoint_share")
        if self.endpoint_share > self.ratio:
            raise ValueError(
                f"endpoint_share ({endpoint_share}) is part of the r < t pairs and cannot exceed "
                f"ratio_r_neq_t ({ratio_r_neq_t}); raise ratio_r_neq_t or lower endpoint_share"
            )
        self.p_mean, self.p_std = float(p_mean), float(p_std)
        self.adaptive_p, self.adaptive_c = float(adaptive_p), float(adaptive_c)
        self.default_steps = self.check_steps(steps)

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        saved = state_dict.get(prefix + "time_scale")
        if saved is not None and float(saved) != float(self.time_scale):
            args[-1].append(  # error_msgs
                f"the run was trained with network time_scale {float(saved):g}, this MeanFlow "
                f"has {float(self.time_scale):g}; build it with network={{'time_scale': "
                f"{float(saved):g}}}"
            )
        super()._load_from_state_dict(state_dict, prefix, *args)

    def average_velocity(self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``u(z, r, t)`` ``(batch, *event)`` (the network sees ``t`` and ``t - r``)."""
        return self.network(z, t, t - r)

    def sample_rt(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, t)`` with ``r <= t``: two logit-normal times, sorted; ``r = t`` for a
        fraction ``1 - ratio_r_neq_t`` of the rows."""
        a = torch.sigmoid(self.p_mean + self.p_std * torch.randn(2, n, device=self.device))
        t, r = a.max(0).values, a.min(0).values
        u = torch.rand(n, device=self.device)
        r = torch.where(u >= self.ratio, t, r)
        ends = u < self.endpoint_share  # a sub-share of the r < t rows
        t = torch.where(ends, torch.full_like(t, self.path.t_max), t)
        r = torch.where(ends, torch.full_like(r, self.path.t_min), r)
        return r.to(self.dtype), t.to(self.dtype)

    def map_loss(self, x0: torch.Tensor, cond=None) -> torch.Tensor:
        r, t = self.sample_rt(len(x0))
        s = self.path.sample(x0, t)
        v = s.velocity
        if self.teacher is not None or self._teacher_field is not None:
            with torch.no_grad():
                v = self.teacher_field.velocity(s.x_t, t)
        u, target = meanflow_target(self.average_velocity, s.x_t, r, t, v)
        sq = (u - target).reshape(len(x0), -1).pow(2).sum(1)
        weight = 1.0 / (sq.detach() + self.adaptive_c) ** self.adaptive_p
        return weight * sq

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        x_init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``steps`` uniform jumps ``x_r = x_t - (t - r) u(x_t, r, t)`` from ``t = 1`` to 0."""
        x = self.start(n, cond, generator, x_init)
        n = len(x)
        steps = self.check_steps(steps or self.default_steps)
        t_max, t_min = self.path.t_max, self.path.t_min
        ts = torch.linspace(t_max, t_min, steps + 1, dtype=torch.float64).tolist()
        for t_hi, t_lo in zip(ts[:-1], ts[1:]):
            x = x - (t_hi - t_lo) * self.average_velocity(
                x, self.expand(t_lo, n), self.expand(t_hi, n)
            )
        return self._record(x, steps)
