"""Progressive distillation (Salimans & Ho 2022): halve a DDIM sampler's steps per round.

A student with ``N`` DDIM steps learns to land, in one step from ``z_t``, where two DDIM steps
of its teacher (``N' = 2N`` steps) land. With ``t' = t - 1/(2N)``, ``t'' = t - 1/N`` and the
teacher's two steps ``z_t -> z_t' -> z_t''``, the one-step DDIM update
``z_t'' = alpha'' x + (sigma'' / sigma) (z_t - alpha x)`` is solved for the data prediction
that does it (their Alg. 2)::

    x_tilde = (z_t'' - (sigma'' / sigma) z_t) / (alpha'' - (sigma'' / sigma) alpha),

and the student (a v-prediction network, their Sec. 4) regresses its ``x0_hat`` on
``x_tilde`` with the truncated-SNR weight ``max(alpha^2 / sigma^2, 1)``. After each round the
student becomes the teacher and ``N`` halves, down to ``final_steps``.

Without an external teacher the model first trains itself as an ordinary v-prediction
diffusion model for ``round_steps`` steps (round 0, ``teacher_steps`` DDIM steps), then runs
rounds of ``round_steps`` each; the round and the current ``N`` are buffers (saved, resumed).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch

from probpath.core.broadcast import append_dims
from probpath.core.model import Capabilities, OptimizerGroup
from probpath.core.validation import check_positive_int
from probpath.maps.base import MapModel, path_regression_loss, teacher_solve
from probpath.paths.affine import AffinePath
from probpath.paths.field import Field, PathField
from probpath.sampling.path_model import build_path_network
from probpath.sampling.samplers import sample_path

__all__ = ["ProgressiveDistillation", "distillation_target"]


def distillation_target(
    path: AffinePath, z_t: torch.Tensor, t: torch.Tensor, z_next: torch.Tensor, t_next: torch.Tensor
) -> torch.Tensor:
    """``x_tilde`` such that one DDIM step from ``(z_t, t)`` lands on ``z_next`` at ``t_next``
    (Salimans & Ho 2022, Alg. 2); where ``sigma(t_next) = 0`` it is ``z_next / alpha(t_next)``."""
    v, w = path(t), path(t_next)
    ratio = append_dims(w.sigma / v.sigma, z_t)
    num = z_next - ratio * z_t
    den = append_dims(w.alpha, z_t) - ratio * append_dims(v.alpha, z_t)
    return num / den


class ProgressiveDistillation(MapModel):
    """A v-prediction student whose DDIM sampler needs half the teacher's steps per round.

    Args:
        event_shape: shape of one sample (vectors).
        schedule, schedule_options: the teacher's path (default: DDPM's linear betas, as the
            ``ddpm-v`` catalog entry).
        network: options of the student's :class:`~probpath.nn.TimeMLP`.
        teacher: a run directory of a trained path model (e.g. ``ddpm-v``); ``None``: round
            0 trains the network itself as a diffusion model.
        teacher_steps: DDIM steps of the starting teacher.
        final_steps: the rounds stop when the student takes this many steps.
        round_steps: training steps per round (and for round 0 without a teacher).
    """

    capabilities: ClassVar[Capabilities] = Capabilities(route="velocity", section="§3.3")

    def __init__(
        self,
        event_shape: tuple[int, ...],
        schedule: str = "ddpm",
        schedule_options: dict[str, Any] | None = None,
        network: dict[str, Any] | None = None,
        teacher: str | None = None,
        teacher_steps: int = 64,
        final_steps: int = 4,
        round_steps: int = 1000,
    ):
        event_shape = tuple(event_shape)
        super().__init__(
            event_shape,
            AffinePath(schedule, **(schedule_options or {})),
            build_path_network(event_shape, 0, network),
            teacher=teacher,
            internal_teacher=False,
        )
        self.teacher_steps = check_positive_int(teacher_steps, "teacher_steps")
        self.final_steps = check_positive_int(final_steps, "final_steps")
        if self.teacher_steps % self.final_steps or (
            (self.teacher_steps // self.final_steps) & (self.teacher_steps // self.final_steps - 1)
        ):
            raise ValueError(
                f"teacher_steps / final_steps must be a power of two (steps halve per round); "
                f"got {teacher_steps} / {final_steps}"
            )
        self.round_steps = check_positive_int(round_steps, "round_steps")
        self.field = PathField(self.network, self.path, "v")
        self.frozen = copy.deepcopy(self.network).requires_grad_(False)
        self.register_buffer("round", torch.zeros((), dtype=torch.long))
        first = self.teacher_steps if teacher is None else self.teacher_steps // 2
        self.register_buffer("student_steps", torch.tensor(max(first, self.final_steps)))

    def set_teacher(self, field: Field) -> ProgressiveDistillation:
        """Distil ``field`` (``teacher_steps`` DDIM steps) into a student of half the steps."""
        super().set_teacher(field)
        if int(self.round) == 0:
            self.student_steps.fill_(max(self.teacher_steps // 2, self.final_steps))
        return self

    @property
    def pretraining(self) -> bool:
        """Round 0 without an external teacher: plain v-prediction diffusion training."""
        return self.teacher is None and self._teacher_field is None and int(self.round) == 0

    def current_teacher(self) -> Field:
        """Round 1 from an external teacher; later rounds from the frozen previous student."""
        external = self.teacher is not None or self._teacher_field is not None
        if external and int(self.round) == 0:
            return self.teacher_field
        return PathField(self.frozen, self.path, "v")

    def next_round(self) -> None:
        """The student becomes the teacher (after round 0 without a teacher: the pretrained
        model does); the student's ``N`` halves, not below ``final_steps``."""
        with torch.no_grad():
            self.frozen.load_state_dict(self.network.state_dict())
        self.student_steps.copy_(torch.clamp(self.student_steps // 2, min=self.final_steps))
        self.round += 1

    def after_step(self) -> None:
        if int(self.train_steps) % self.round_steps == 0 and int(self.student_steps) > (
            self.final_steps
        ):
            self.next_round()

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        return {"model": OptimizerGroup(list(self.network.parameters()))}

    def map_loss(self, x0: torch.Tensor, cond=None) -> torch.Tensor:
        if self.pretraining:
            t0 = self.path.t_min
            t = t0 + (1.0 - t0) * torch.rand(len(x0), device=x0.device, dtype=x0.dtype)
            return path_regression_loss(self.field, x0, t)
        n = int(self.student_steps)
        i = torch.randint(1, n + 1, (len(x0),), device=x0.device).to(x0.dtype)
        t, t_mid, t_next = i / n, (i - 0.5) / n, (i - 1.0) / n
        z_t = self.path.sample(x0, t).x_t
        with torch.no_grad():
            times = torch.stack([t, t_mid, t_next], dim=1)
            z_next = teacher_solve(self.current_teacher(), z_t, times, sampler="ddim")
            x_tilde = distillation_target(self.path, z_t, t, z_next, t_next)
        x0_hat, _ = self.field.x0_eps(z_t, t)
        v = self.path(t)
        weight = torch.clamp(v.alpha**2 / v.sigma**2, min=1.0)
        return weight * (x0_hat - x_tilde).reshape(len(x0), -1).pow(2).mean(1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        x_init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Deterministic DDIM with the student's current ``N`` steps (or ``steps``) from t = 1."""
        x = self.start(n, cond, generator, x_init)
        steps = self.check_steps(steps or int(self.student_steps))
        grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
        out = sample_path(self.field, x.shape, sampler="ddim", grid=grid, x_init=x)
        return self._record(out.x, out.nfe)
