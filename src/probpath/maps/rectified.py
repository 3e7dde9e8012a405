"""k-rectified-flow distillation (Liu et al. 2023, Sec. 2.3): regress the teacher's ODE map.

After ``k`` reflow rounds the teacher's flow is nearly straight; its noise-to-data map
``T(eps) = ODE(eps)`` is then distilled into a one-step generator
``g(eps) = eps - v_theta(eps, 1)`` (one Euler step of a velocity network, so the student can
start from the teacher's weights), trained on pairs ``(eps, T(eps))`` simulated on the fly
with ``pair_steps`` steps of a shared sampler: ``|g(eps) - T(eps)|^2`` (the paper uses LPIPS on
images; L2 here).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from probpath.core.model import Capabilities
from probpath.core.validation import check_positive_int
from probpath.maps.base import MapModel
from probpath.paths.affine import AffinePath
from probpath.sampling.path_model import build_path_network
from probpath.sampling.samplers import sample_path

__all__ = ["RectifiedDistillation"]


class RectifiedDistillation(MapModel):
    """One-step distillation of a (rectified) flow's ODE map.

    Args:
        event_shape: shape of one sample.
        network: options of the student's :class:`~probpath.nn.TimeMLP` (called at ``t = 1``).
        teacher: a run directory of a trained linear-path model (``rectified-flow`` after
            ``reflow``, ``cfm``); ``None``: an internal flow-matching teacher trained jointly.
        teacher_network: options of the internal teacher.
        pair_sampler, pair_steps: the ODE solve that makes the pairs.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="velocity", section="§3.3", one_step=True
    )

    def __init__(
        self,
        event_shape: tuple[int, ...],
        network: dict[str, Any] | None = None,
        teacher: str | None = None,
        teacher_network: dict[str, Any] | None = None,
        pair_sampler: str = "rk4",
        pair_steps: int = 8,
    ):
        event_shape = tuple(event_shape)
        super().__init__(
            event_shape,
            AffinePath("linear"),
            build_path_network(event_shape, 0, network),
            teacher=teacher,
            teacher_network=teacher_network,
        )
        self.pair_sampler = pair_sampler
        self.pair_steps = check_positive_int(pair_steps, "pair_steps")

    def generate(self, eps: torch.Tensor) -> torch.Tensor:
        """``g(eps) = eps - v_theta(eps, 1)`` ``(batch, *event)``."""
        return eps - self.network(eps, self.expand(1.0, len(eps)))

    @torch.no_grad()
    def pairs(self, n: int, generator: torch.Generator | None = None):
        """``(eps, T(eps))``: noise and the teacher's ODE image of it."""
        eps = self.prior(n, generator)
        grid = torch.linspace(1.0, 0.0, self.pair_steps + 1, dtype=torch.float64)
        out = sample_path(
            self.teacher_field, eps.shape, sampler=self.pair_sampler, grid=grid, x_init=eps
        )
        return eps, out.x.to(eps.dtype)

    def map_loss(self, x0: torch.Tensor, cond=None) -> torch.Tensor:
        eps, target = self.pairs(len(x0))
        return (self.generate(eps) - target).reshape(len(x0), -1).pow(2).mean(1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        x_init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One network call: ``g(eps)``."""
        x = self.start(n, cond, generator, x_init)
        n = len(x)
        return self._record(self.generate(x), 1)
