"""k-rectified-flow distillation (Liu et al. 2023, Sec. 2.3): regress the teacher's ODE map.

After ``k`` reflow rounds the teacher's flow is nearly straight; its noise-to-data map
``T(eps) = ODE(eps)`` is then distilled into a one-step generator
``g(eps) = eps - v_theta(eps, 1)`` (one Euler step of a velocity network, so the student can
start from the teacher's weights), trained on pairs ``(eps, T(eps))`` solved with
``pair_steps`` steps of a shared sampler: ``|g(eps) - T(eps)|^2`` (the paper uses LPIPS on
images; L2 here). With a frozen teacher the pairs are solved once, as the paper builds its
distillation set once; an internal teacher, trained jointly, gets fresh pairs every batch.
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
        n_pairs: with a frozen teacher (``teacher`` or :meth:`set_teacher`), solve this many
            pairs once, at the first training step, and draw every batch from them; ``None``
            solves each batch's pairs afresh (``pair_steps`` x the sampler's NFE per step:
            on digits, 1,055 steps in 37.5 CPU-s against 9,091 from a 10,000-pair set, FD
            92 vs 38). An internal teacher always gets fresh pairs (it is still training).
        pair_seed: seed of the noise of the pair set (a resumed run solves the same set).
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
        n_pairs: int | None = 10_000,
        pair_seed: int = 0,
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
        self.n_pairs = None if n_pairs is None else check_positive_int(n_pairs, "n_pairs")
        if isinstance(pair_seed, bool) or not isinstance(pair_seed, int) or pair_seed < 0:
            raise ValueError(f"pair_seed must be a non-negative integer, got {pair_seed!r}")
        self.pair_seed = pair_seed
        self._pair_set: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def fixed_nfe(self) -> int:
        return 1

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

    def set_teacher(self, field) -> RectifiedDistillation:
        self._pair_set = None  # solved by the previous teacher
        return super().set_teacher(field)

    def batch_pairs(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` pairs for one training step: drawn from the pair set (solved on first use, in
        chunks of 1,024) or, without one, solved now."""
        if self.n_pairs is None or self.has_internal_teacher:
            return self.pairs(n)
        if self._pair_set is None or self._pair_set[0].device != self.device:
            g = torch.Generator(device=self.device).manual_seed(self.pair_seed)
            chunks = [
                self.pairs(min(1024, self.n_pairs - i), g) for i in range(0, self.n_pairs, 1024)
            ]
            self._pair_set = (torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks]))
        eps, target = self._pair_set
        i = torch.randint(0, len(eps), (n,), device=eps.device)
        return eps[i], target[i]

    def map_loss(self, x0: torch.Tensor, cond=None) -> torch.Tensor:
        eps, target = self.batch_pairs(len(x0))
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
