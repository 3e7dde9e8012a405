"""Continuous normalizing flow, FFJORD-style (Chen et al. 2018; Grathwohl et al. 2019; §3.2).

A velocity network ``v_θ(x, t)`` transports data (t = 0) to a standard normal (t = 1).
Maximum likelihood uses the instantaneous change of variables (Eq. 55) through the shared
:func:`probpath.sampling.likelihood.ode_log_prob` — Hutchinson's trace while training, the
exact trace for evaluation in small dimension — with an adaptive solver (dopri5, rtol/atol)
or a fixed-step RK4 when ``solver_steps`` is set. Optional RNODE regularisation (Finlay et
al. 2020) adds ``kinetic_weight · ∫‖v‖² dt + jacobian_weight · ∫‖εᵀ ∂v/∂x‖² dt``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch

from probpath.core.model import Capabilities, Model
from probpath.core.validation import (
    check_event_shape,
    check_positive_int,
    check_tensor,
)
from probpath.likelihood.flows.base import standard_normal_log_prob
from probpath.nn.time_mlp import TimeMLP
from probpath.sampling.integrate import integrate
from probpath.sampling.likelihood import LikelihoodResult, ode_log_prob

__all__ = ["CNF"]


class CNF(Model):
    """FFJORD continuous normalizing flow with a time-conditioned MLP velocity.

    Args:
        event_shape: data shape (flattened inside).
        hidden: hidden widths of the velocity MLP.
        act: activation (smooth ones keep the ODE easy to solve).
        rtol, atol: adaptive-solver tolerances (training and evaluation).
        solver_steps: fixed RK4 steps instead of the adaptive solver (faster, for tests).
        n_probes: Hutchinson probes per sample while training.
        exact_trace_max_dim: evaluate with the exact trace up to this dimension, else
            Hutchinson (``log_prob`` is then an unbiased *estimate*).
        kinetic_weight, jacobian_weight: RNODE regularisation weights (0 disables).

    After each training step ``last_nfe`` holds the number of velocity evaluations of the
    forward solve; ``train_step`` reports it as ``nfe`` in the training log.

    >>> m = CNF((2,), hidden=(16,), solver_steps=4)
    >>> m.log_prob(torch.zeros(3, 2)).shape
    torch.Size([3])
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="likelihood", section="§3.2", exact_log_prob=True
    )

    def __init__(
        self,
        event_shape,
        hidden: Sequence[int] = (64, 64, 64),
        act: str = "tanh",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        solver_steps: int | None = None,
        n_probes: int = 1,
        exact_trace_max_dim: int = 16,
        kinetic_weight: float = 0.0,
        jacobian_weight: float = 0.0,
    ):
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        self.dim = math.prod(self.event_shape)
        self.velocity_net = TimeMLP(self.dim, hidden=tuple(hidden), act=act)
        self.rtol, self.atol = float(rtol), float(atol)
        self.solver_steps = (
            None if solver_steps is None else check_positive_int(solver_steps, "solver_steps")
        )
        self.n_probes = check_positive_int(n_probes, "n_probes")
        self.exact_trace_max_dim = int(exact_trace_max_dim)
        if kinetic_weight < 0 or jacobian_weight < 0:
            raise ValueError("kinetic_weight and jacobian_weight must be >= 0")
        self.kinetic_weight, self.jacobian_weight = float(kinetic_weight), float(jacobian_weight)
        self.last_nfe = 0

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``dx/dt`` at ``(x (batch, d), t (batch,))``."""
        return self.velocity_net(x, t)

    def _solve(self, x: torch.Tensor, *, training: bool, generator=None) -> LikelihoodResult:
        x = check_tensor(x, "x", event_shape=self.event_shape)
        x = x.to(device=self.device, dtype=next(self.parameters()).dtype).flatten(1)
        hutch = training or self.dim > self.exact_trace_max_dim
        regularize = training and (self.kinetic_weight > 0 or self.jacobian_weight > 0)
        result = ode_log_prob(
            self.velocity,
            x,
            standard_normal_log_prob,
            trace="hutchinson" if hutch else "exact",
            n_probes=self.n_probes,
            generator=generator,
            rtol=self.rtol,
            atol=self.atol,
            steps=self.solver_steps,
            differentiable=training,
            regularize=regularize,
        )
        self.last_nfe = result.nfe
        return result

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``−log p(x)`` (Hutchinson) plus the RNODE terms, per sample ``(batch,)``."""
        r = self._solve(x, training=True)
        loss = -r.log_prob
        if r.kinetic is not None:
            loss = loss + self.kinetic_weight * r.kinetic
            loss = loss + self.jacobian_weight * r.jacobian_frobenius
        return loss

    def train_step(self, x, cond, step: int, update) -> dict[str, float]:
        """One optimizer step; logs the loss and the solver's NFE."""
        loss = self.loss(x, cond).mean()
        update(loss, "model")
        return {"loss": loss.item(), "nfe": float(self.last_nfe)}

    def log_prob(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``log p(x)`` with the exact trace (Hutchinson estimate above ``exact_trace_max_dim``)."""
        return self._solve(x, training=False, generator=generator).log_prob

    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **options,
    ) -> torch.Tensor:
        """Draw ``z ~ N(0, I)`` and integrate the velocity from t = 1 back to t = 0."""
        n = check_positive_int(n, "n")
        dtype = next(self.parameters()).dtype
        z = torch.randn(n, self.dim, generator=generator, dtype=dtype).to(self.device)
        nfe = [0]

        def rhs(t, y):
            nfe[0] += 1
            return self.velocity(y, t.expand(n))

        with torch.no_grad():
            x = integrate(rhs, z, 1.0, 0.0, rtol=self.rtol, atol=self.atol, steps=self.solver_steps)
        self.sampling_nfe = nfe[0]
        return x.reshape(n, *self.event_shape)
