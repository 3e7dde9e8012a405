"""``MapModel``: the base class of few-step generators, which learn maps instead of fields.

A field answers "which way does ``x_t`` move at time ``t``"; a map answers "where does the
probability-flow ODE started at ``(x_t, t)`` arrive at time ``s``". Consistency models learn
the map to the data end, MeanFlow the average velocity of the map between two times, shortcut
models and distilled students the map of one finite step. Sampling with ``k`` steps is ``k``
map calls (``k`` NFE), not an ODE solve.

What the subclasses share lives here: the path, input validation, the *teacher* (any
:class:`~probpath.paths.field.Field`: a trained path model loaded from a run directory, the
Gaussian-mixture oracle, or, when none is given, an internal velocity network trained jointly
by flow matching so that a catalog entry is self-contained), one teacher ODE step through the
shared samplers (:func:`~probpath.sampling.samplers.sample_path`), and an EMA target network.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from probpath.core.broadcast import append_dims
from probpath.core.model import Capabilities, OptimizerGroup
from probpath.core.validation import check_event_shape, check_positive_int
from probpath.paths.affine import AffinePath
from probpath.paths.field import Field, PathField
from probpath.paths.parameterization import from_x0_eps
from probpath.sampling.path_model import EventModel, build_path_network
from probpath.sampling.samplers import SAMPLERS, sample_path

__all__ = [
    "MapModel",
    "load_teacher",
    "teacher_solve",
    "flow_map",
    "path_regression_loss",
    "check_clip",
]


def load_teacher(run_dir: str | Path) -> Field:
    """The field of a trained path model saved in ``run_dir`` (``probpath fit ddpm ...``).

    Raises:
        ValueError: the directory holds a model without a field (a VAE, a GAN, ...).
    """
    from probpath.io import load  # the loader sits above the routes; import at call time

    model = load(run_dir)
    field = getattr(model, "field", None)
    if not isinstance(field, Field):
        raise ValueError(
            f"teacher {str(run_dir)!r} holds a {type(model).__name__}, which has no probability "
            "path field; train a path model first (e.g. `probpath fit cfm` or `fit ddpm-v`)"
        )
    model.requires_grad_(False)
    return field


_PER_SAMPLE = ("euler", "heun", "ddim")


def _per_sample_steps(field: Field, x, times, rule: str, cond):
    """Euler / Heun / deterministic DDIM steps with a time per row: one batched field call
    per stage however many distinct times the batch holds (the rules of the shared
    ``euler`` / ``heun`` / ``ddim`` samplers, which take one grid per call). DDIM (eta = 0):
    ``x_s = alpha_s x0_hat + sigma_s eps_hat`` (Song, Meng & Ermon 2021, Eq. 12)."""
    for j in range(times.shape[1] - 1):
        t, s = times[:, j].to(x), times[:, j + 1].to(x)
        if rule == "ddim":
            x0_hat, eps_hat = field.x0_eps(x, t, cond)
            v = field.path(s)
            x = append_dims(v.alpha, x) * x0_hat + append_dims(v.sigma, x) * eps_hat
            continue
        h = append_dims(s - t, x)
        d = field.velocity(x, t, cond)
        x_next = x + h * d
        if rule == "heun":
            x_next = x + 0.5 * h * (d + field.velocity(x_next, s, cond))
        x = x_next
    return x


def teacher_solve(
    field: Field, x: torch.Tensor, times: torch.Tensor, *, sampler: str = "heun", cond=None
) -> torch.Tensor:
    """Run ``sampler`` of the shared registry on a per-sample time grid.

    Row ``b`` of ``x`` ``(batch, *event)`` starts at ``times[b, 0]`` and steps through
    ``times[b, 1:]`` (``times``: ``(batch, k)``, decreasing along each row). Rows that share a
    grid are solved in one :func:`~probpath.sampling.samplers.sample_path` call (the samplers
    take one grid per call); ``"euler"``, ``"heun"`` and ``"ddim"`` run batched with a
    time per row.
    Returns the state at ``times[:, -1]``.
    """
    if sampler in _PER_SAMPLE:
        return _per_sample_steps(field, x, times, sampler, cond)
    if sampler not in SAMPLERS:
        names = ", ".join(map(repr, SAMPLERS))
        raise ValueError(f"sampler must be one of {names}; got {sampler!r}")
    out = torch.empty_like(x)
    grids, which = torch.unique(times.detach().double().cpu(), dim=0, return_inverse=True)
    for k, grid in enumerate(grids):
        rows = (which == k).to(x.device)
        c = None if cond is None else cond[rows]
        xk = x[rows]
        out[rows] = sample_path(
            field, xk.shape, sampler=sampler, grid=grid, x_init=xk, cond=c
        ).x.to(x.dtype)
    return out


def flow_map(
    field: Field, x: torch.Tensor, t_from: float, t_to: float, *, rtol=1e-8, atol=1e-8
) -> torch.Tensor:
    """The probability-flow ODE map of ``field`` from ``t_from`` to ``t_to`` (tight adaptive
    dopri5 solve through the shared ``"adaptive"`` sampler), the reference few-step maps are
    measured against. Ending where ``sigma = 0`` (the data end of the linear path) the solve
    stops at ``1e-7`` above it and takes the explicit final step ``x0_hat``, an
    ``O(1e-7)`` difference."""
    t_from, t_to = float(t_from), float(t_to)
    end = [t_to] if float(field.path(torch.tensor([t_to])).sigma) > 0 else [t_to + 1e-7, t_to]
    return sample_path(
        field, x.shape, sampler="adaptive", grid=[t_from, *end], x_init=x, rtol=rtol, atol=atol
    ).x


def path_regression_loss(field: PathField, x0: torch.Tensor, t: torch.Tensor, cond=None):
    """Per-sample ``mean |field(x_t, t) - target|^2`` with the field's native target on its
    path (the CFM loss, Eq. 62, for a velocity field; L_simple for eps; ...) -> ``(batch,)``."""
    s = field.path.sample(x0, t)
    target = from_x0_eps(s.x0, s.eps, field.prediction, s.x_t, t, field.path)
    err = field.evaluate(s.x_t, t, cond) - target
    return err.reshape(len(x0), -1).pow(2).mean(1)


def check_clip(clip_x0) -> tuple[float, float] | None:
    """``clip_x0`` as ``(low, high)`` floats (or ``None``), the data range every data estimate
    ``x0`` of a multistep sampler is clamped to before it is re-noised (the path samplers'
    ``clip_x0``, diffusers' ``clip_sample``).

    Raises:
        ValueError: not a pair with ``low < high``.
    """
    if clip_x0 is None:
        return None
    if not isinstance(clip_x0, list | tuple) or len(clip_x0) != 2:
        raise ValueError(f"clip_x0 must be a pair (low, high), e.g. (-1, 1); got {clip_x0!r}")
    low, high = (float(v) for v in clip_x0)
    if not low < high:
        raise ValueError(f"clip_x0 must be (low, high) with low < high, got ({low}, {high})")
    return low, high


class MapModel(EventModel):
    """A few-step generator on an affine path (subclasses define ``map_loss`` and ``sample``).

    Args:
        event_shape: shape of one sample.
        path: the :class:`AffinePath` the map lives on (the teacher's, when there is one).
        teacher: a run directory of a trained path model, or ``None``. With ``None`` and
            ``internal_teacher=True`` the model owns a velocity network of its own, trained by
            flow matching in the same optimizer steps (a self-contained catalog entry); tests
            and scripts can also hand any field over with :meth:`set_teacher`.
        internal_teacher: build that internal teacher (ignored when ``teacher`` is given).
        teacher_network: options of the internal teacher's network.
        teacher_prediction: what the internal teacher predicts.
        target_decay: EMA decay of the target network (``None``: no target copy; ``0``: the
            target is the online network under ``stop_grad``, as in improved CT).

    Attributes:
        sampling_nfe: map evaluations per sample of the last :meth:`sample` call.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="velocity", section="§3.3", one_step=True
    )

    def __init__(
        self,
        event_shape: tuple[int, ...],
        path: AffinePath,
        network: nn.Module,
        *,
        teacher: str | None = None,
        internal_teacher: bool = True,
        teacher_network: dict[str, Any] | None = None,
        teacher_prediction: str = "velocity",
        target_decay: float | None = None,
    ):
        super().__init__()
        self.register_buffer("_probe", torch.zeros(()), persistent=False)
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))
        self.event_shape = check_event_shape(event_shape)
        self.path, self.network = path, network
        self.teacher = None if teacher is None else str(teacher)
        self._teacher_field: Field | None = None
        if self.teacher is None and internal_teacher:
            self.teacher_net = build_path_network(self.event_shape, 0, teacher_network)
            self._teacher_field = PathField(self.teacher_net, path, teacher_prediction)
        if target_decay is not None and not 0.0 <= target_decay < 1.0:
            raise ValueError(f"target_decay must be in [0, 1) or None, got {target_decay!r}")
        self.target_decay = target_decay
        if target_decay:  # a decay of 0 needs no copy: the target is stop_grad(network)
            self.target = copy.deepcopy(network).requires_grad_(False)
        self.sampling_nfe: int | None = None

    # -- helpers ---------------------------------------------------------------------------
    def check_n(self, n) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer number of samples, got {n!r}")
        return n

    def check_steps(self, steps) -> int:
        return check_positive_int(steps, "steps")

    @property
    def fixed_nfe(self) -> int | None:
        """Network evaluations per sample of a map whose :meth:`sample` takes no ``steps``
        (a count fixed at construction); ``None`` when ``sample(steps=k)`` chooses it."""
        return None

    def steps_option(self, steps: int | None) -> dict[str, int]:
        """The :meth:`sample` options that ask for ``steps`` jumps: ``{"steps": k}``, or ``{}``
        for ``None`` and for a fixed-count map asked for its own count.

        Raises:
            ValueError: ``steps`` is not a positive integer, or differs from a fixed count.
        """
        if steps is None:
            return {}
        k = self.check_steps(steps)
        if self.fixed_nfe is None:
            return {"steps": k}
        if k != self.fixed_nfe:
            raise ValueError(
                f"{type(self).__name__} takes {self.fixed_nfe} network evaluation(s) per "
                f"sample, fixed when it was built; ask for {self.fixed_nfe} step(s) or leave "
                "steps out"
            )
        return {}

    def expand(self, t: float | torch.Tensor, n: int) -> torch.Tensor:
        """``t`` as ``(n,)`` on the model's device and dtype."""
        return torch.as_tensor(t, device=self.device, dtype=self.dtype).expand(n).clone()

    def prior(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return self.path.prior_sample(
            (n, *self.event_shape), generator=generator, device=self.device, dtype=self.dtype
        )

    # -- teacher ---------------------------------------------------------------------------
    def set_teacher(self, field: Field) -> MapModel:
        """Use ``field`` (any probpath field on this model's path) as the teacher."""
        if not isinstance(field, Field):
            raise ValueError(f"teacher must be a probpath Field, got {type(field).__name__}")
        if field.path.schedule != self.path.schedule:
            raise ValueError(
                f"the teacher lives on {field.path!r} but this model on {self.path!r}; build the "
                "model with the teacher's schedule"
            )
        self._teacher_field = field
        return self

    def init_from_teacher(self) -> None:
        """Copy the teacher's network into the online network (and the target copy).

        Raises:
            ValueError: the teacher has no network of this architecture, or preconditions it.
        """
        field = self.teacher_field
        net = getattr(field, "network", None)
        if not isinstance(net, nn.Module) or getattr(field, "precondition", False):
            raise ValueError(
                "init_from_teacher needs a teacher with a plain network (a PathField without "
                f"preconditioning); got {type(field).__name__}"
            )
        mine, theirs = self.network.state_dict(), net.state_dict()
        if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
            raise ValueError(
                "the teacher's network has another architecture; build this model with the "
                "teacher's network options (e.g. the same `hidden`)"
            )
        self.network.load_state_dict(theirs)
        if self.target_decay:
            self.target.load_state_dict(self.network.state_dict())

    @property
    def teacher_field(self) -> Field:
        """The teacher (loaded from ``teacher`` on first use)."""
        if self._teacher_field is None:
            if self.teacher is None:
                raise ValueError(
                    f"{type(self).__name__} needs a teacher: pass teacher=RUN_DIR, build it with "
                    "internal_teacher=True, or call set_teacher(field)"
                )
            self.set_teacher(load_teacher(self.teacher))
        return self._teacher_field

    @property
    def has_internal_teacher(self) -> bool:
        return (
            hasattr(self, "teacher_net")
            and self._teacher_field is not None
            and (getattr(self._teacher_field, "network", None) is self.teacher_net)
        )

    def teacher_loss(self, x0: torch.Tensor, cond=None) -> torch.Tensor:
        """Flow-matching loss of the internal teacher ``(batch,)`` (zeros without one)."""
        if not self.has_internal_teacher:
            return x0.new_zeros(len(x0))
        t0 = self.path.t_min
        t = t0 + (self.path.t_max - t0) * torch.rand(len(x0), device=x0.device, dtype=x0.dtype)
        return path_regression_loss(self._teacher_field, x0, t, cond)

    # -- target network --------------------------------------------------------------------
    def target_network(self) -> nn.Module:
        """The network the targets are computed with (call under ``no_grad``)."""
        return self.target if self.target_decay else self.network

    @torch.no_grad()
    def update_target(self) -> None:
        """``theta_target <- mu theta_target + (1 - mu) theta`` (Song et al. 2023, Alg. 2)."""
        if self.target_decay:
            online = list(self.network.parameters())
            torch._foreach_lerp_(list(self.target.parameters()), online, 1.0 - self.target_decay)

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        """The online network and the internal teacher (the target copy is not trained)."""
        frozen = {id(p) for p in self.target.parameters()} if self.target_decay else set()
        params = [p for p in self.parameters() if p.requires_grad and id(p) not in frozen]
        return {"model": OptimizerGroup(params)}

    # -- training --------------------------------------------------------------------------
    def map_loss(self, x0: torch.Tensor, cond=None) -> torch.Tensor:
        """The few-step objective ``(batch,)`` on validated data (subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} must implement map_loss(x0, cond)")

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample loss ``(batch,)``: the map objective plus the internal teacher's."""
        if cond is not None:
            raise ValueError(f"{type(self).__name__} is unconditional; pass cond=None")
        x0 = self.check_input(x)
        return self.map_loss(x0) + self.teacher_loss(x0)

    def train_step(self, x, cond, step: int, update) -> dict[str, float]:
        """One optimizer step on :meth:`loss`, then the target EMA and the step counter."""
        update(self.loss(x, cond).mean(), "model")
        self.update_target()
        self.train_steps += 1
        self.after_step()
        return {}

    def after_step(self) -> None:
        """Hook run after each training step (progressive distillation's rounds)."""

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} learns a map from noise to data, not a density: a few-step "
            "map has no tractable Jacobian; use the teacher's log_prob or an MMD / FD metric"
        )

    def start(self, n, cond, generator, x_init) -> torch.Tensor:
        """The prologue of every ``sample``: check ``n`` and ``cond``; ``x_init`` (validated)
        or a prior draw at ``t_max``, ``(n, *event_shape)``."""
        if cond is not None:
            raise ValueError(f"{type(self).__name__} is unconditional; pass cond=None")
        n = self.check_n(n)
        return self.prior(n, generator) if x_init is None else self.check_input(x_init, "x_init")

    def _record(self, x: torch.Tensor, nfe: int) -> torch.Tensor:
        self.sampling_nfe = nfe
        return x
