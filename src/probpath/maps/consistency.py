"""Consistency models (Song et al. 2023; Song & Dhariwal 2023): distillation (CD) and training (CT).

A consistency function ``f(x_t, t)`` maps every point of a probability-flow ODE trajectory to
the trajectory's data end, so one evaluation at ``t_max`` is a 1-step generator. It is
parameterised so that the boundary condition ``f(x, t_min) = x`` holds by construction
(Song et al. 2023, Eq. 7), in the path's noise level ``sigma_tilde = sigma_t / alpha_t``::

    f(x, t) = c_skip(t) x + c_out(t) F(x, t),
    c_skip = s_d^2 / ((sigma_tilde - sigma_tilde_min)^2 + s_d^2),
    c_out  = s_d (sigma_tilde - sigma_tilde_min) / sqrt(s_d^2 + sigma_tilde^2),

written with ``alpha`` multiplied through so that it stays finite where ``alpha_t = 0``
(the linear path at ``t = 1``: ``c_skip = 0``, ``c_out = s_d``).

Training pairs adjacent times ``t_hi > t_lo`` of a discretisation and minimises
``lambda d(f(x_hi, t_hi), f^-(x_lo, t_lo))`` with the target network ``f^-`` (EMA or
stop-grad): in CD ``x_lo`` is one ODE step of a teacher field from ``x_hi``; in CT it is the
same noise ``eps`` on the path at ``t_lo`` (the one-sample estimate of that step). The improved
recipe (Song & Dhariwal 2023): pseudo-Huber ``d``, lognormal sampling of the noise level,
weights ``lambda = 1 / (t_hi - t_lo)`` (in ``t``, normalised so a uniform grid has weight 1),
target = stop-grad of the online network, and a curriculum that doubles the number of
discretisation steps from ``n_min`` to ``n_max`` over ``curriculum_steps`` training steps.

Time: t = 0 data, t = 1 noise; the papers' ``sigma`` is this ``sigma_tilde``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from probpath.core.broadcast import append_dims
from probpath.core.model import Capabilities
from probpath.core.validation import check_choice, check_positive_int, check_probability
from probpath.maps.base import MapModel, check_clip, teacher_solve
from probpath.paths.affine import AffinePath
from probpath.paths.parameterization import Prediction, convert
from probpath.sampling.path_model import build_path_network
from probpath.sampling.timesteps import make_grid

__all__ = [
    "ConsistencyModel",
    "boundary_coefficients",
    "pseudo_huber",
    "curriculum_steps_at",
    "lognormal_index_weights",
]


def boundary_coefficients(
    path: AffinePath, t: torch.Tensor, sigma_data: float, t_min: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(c_skip, c_out)`` ``(batch,)`` with ``c_skip = 1``, ``c_out = 0`` exactly at ``t_min``.

    In ``sigma_tilde = sigma / alpha`` (Song et al. 2023, Appendix C, with EDM's ``s_d``),
    multiplied through by ``alpha`` (finite where ``alpha = 0``):
    ``c_skip = s_d^2 a^2 / (d^2 + s_d^2 a^2)``, ``c_out = s_d d / sqrt(s_d^2 a^2 + s^2)`` with
    ``d = s - sigma_tilde_min a``.
    """
    v = path(t)
    v_min = path(torch.full_like(t, t_min))
    st_min = v_min.sigma / v_min.alpha
    a, s = v.alpha, v.sigma
    d = torch.where(t <= t_min, torch.zeros_like(s), s - st_min * a)
    sd2a2 = sigma_data**2 * a * a
    c_skip = sd2a2 / (d * d + sd2a2)
    c_out = sigma_data * d / torch.sqrt(sd2a2 + s * s)
    return c_skip, c_out


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """``sqrt(|a - b|^2 + c^2) - c`` per sample (Song & Dhariwal 2023, Eq. 6) -> ``(batch,)``."""
    sq = (a - b).reshape(len(a), -1).pow(2).sum(1)
    return torch.sqrt(sq + c * c) - c


def curriculum_steps_at(k: int, total: int, n_min: int, n_max: int) -> int:
    """Discretisation steps ``N(k) = min(n_min 2^floor(k / K'), n_max)`` with
    ``K' = floor(total / (log2(n_max / n_min) + 1))`` (Song & Dhariwal 2023, Eq. 5)."""
    doublings = math.floor(math.log2(n_max / n_min)) + 1
    stage = max(1, total // doublings)
    return min(n_min * 2 ** (k // stage), n_max)


def lognormal_index_weights(
    path: AffinePath, ts: torch.Tensor, p_mean: float = -1.1, p_std: float = 2.0
) -> torch.Tensor:
    """Probabilities of the intervals ``[ts[n+1], ts[n]]`` of a decreasing grid when
    ``log sigma_tilde ~ N(p_mean, p_std^2)`` (Song & Dhariwal 2023, Eq. 7), ``(len(ts) - 1,)``.

    ``erf((log st_hi - P_mean) / (sqrt 2 P_std)) - erf((log st_lo - P_mean) / (sqrt 2 P_std))``,
    with ``st = sigma / alpha`` (``+inf`` where ``alpha = 0``, ``0`` where ``sigma = 0``).
    """
    v = path(ts.double())
    with torch.no_grad():
        log_st = torch.log(v.sigma) - torch.log(v.alpha)  # +-inf at the ends is fine for erf
    c = torch.erf((log_st - p_mean) / (math.sqrt(2.0) * p_std))
    w = (c[:-1] - c[1:]).clamp_min(0.0)
    return w / w.sum()


class ConsistencyModel(MapModel):
    """Consistency distillation (``mode="distillation"``) or training (``mode="training"``).

    The defaults are improved CT's recipe (Song & Dhariwal 2023) in both modes: pseudo-Huber
    loss, lognormal interval sampling, the doubling curriculum ``n_min -> n_max`` and a
    stop-grad target. The catalog's ``consistency`` and ``consistency-training`` entries add
    ``weighting="uniform"`` and ``renoise_time=0.8``, chosen on digits (tuning seeds 0-1 of
    ``benchmarks/bench_few_step.py``). With ``1 / (t_hi - t_lo)`` in ``t`` units (iCT's
    ``1 / (sigma_hi - sigma_lo)`` carried over to ``t``) and the lognormal draw, intervals
    below ``t = 0.05`` carry 53 % of the loss at ``N = 160`` (18 % of the draws); the
    samples' pixel statistics (SW2, MMD, energy) were then worse than a Gaussian's.

    Args:
        event_shape: shape of one sample (vectors).
        mode: ``"distillation"`` (needs a teacher; see :class:`~probpath.maps.base.MapModel`)
            or ``"training"`` (no teacher).
        schedule, schedule_options: the path (default: the linear / rectified-flow path).
        network: options of the :class:`~probpath.nn.TimeMLP` ``F``.
        sigma_data: ``s_d`` of the boundary parameterisation.
        teacher, teacher_network: see :class:`MapModel`; an internal teacher is built only
            for distillation.
        teacher_sampler: the sampler of the one teacher ODE step (any name of ``SAMPLERS``).
        loss: ``"pseudo_huber"`` (``c = 0.00054 sqrt(D)``) or ``"l2"``.
        weighting: ``"inverse_gap"`` (``lambda = 1 / (t_hi - t_lo)``, improved CT) or
            ``"uniform"`` (``lambda = 1``, the CD of Song et al. 2023).
        n_min, n_max, curriculum_steps: the discretisation curriculum (``n_min = n_max``: a
            fixed grid, as in CD).
        spacing: the grid spacing (``make_grid``; ``"edm"`` is Karras' rho = 7 grid).
        p_mean, p_std: lognormal noise sampling (``None`` for uniform intervals).
        target_decay: EMA decay of the target network (0: stop-grad, improved CT).
        steps: default number of sampling steps (multistep consistency sampling).
        renoise_time: ``None`` (default): the sampling times are ``t_max`` and a uniform grid
            below it (Song et al. 2023, Alg. 1). A time ``t_r``: the first re-noising goes to
            ``t_r`` and later ones follow a uniform grid from ``t_r`` down (2 steps:
            ``[t_max, t_r]``), as the paper picks the 2-step midpoint per data set.
        prediction: ``None`` (default): the network is the free ``F`` above. A prediction
            kind of the conversion hub (``"velocity"``, ``"eps"``, ``"v"``, ``"x0"``, ...):
            the network is read as that prediction on the path, converted to ``x0_hat``, and
            ``f = c_skip x + (1 - c_skip) x0_hat`` (the boundary condition still holds; the
            form of latent consistency models, Luo et al. 2023). With the teacher's kind,
            :meth:`init_from_teacher` starts ``f`` at the teacher's one-step denoiser, as
            Song et al. 2023 start CD from the pretrained model.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="velocity", section="§3.3", one_step=True
    )

    def __init__(
        self,
        event_shape: tuple[int, ...],
        mode: str = "distillation",
        schedule: str = "linear",
        schedule_options: dict[str, Any] | None = None,
        network: dict[str, Any] | None = None,
        sigma_data: float = 0.5,
        teacher: str | None = None,
        teacher_network: dict[str, Any] | None = None,
        teacher_sampler: str = "heun",
        loss: str = "pseudo_huber",
        weighting: str = "inverse_gap",
        n_min: int = 10,
        n_max: int = 160,
        curriculum_steps: int = 4000,
        spacing: str = "edm",
        p_mean: float | None = -1.1,
        p_std: float = 2.0,
        target_decay: float = 0.0,
        steps: int = 1,
        prediction: str | None = None,
        renoise_time: float | None = None,
    ):
        check_choice(mode, "mode", ("distillation", "training"))
        if prediction is not None:
            check_choice(prediction, "prediction", [k.value for k in Prediction])
        check_choice(loss, "loss", ("pseudo_huber", "l2"))
        check_choice(weighting, "weighting", ("inverse_gap", "uniform"))
        event_shape = tuple(event_shape)
        super().__init__(
            event_shape,
            AffinePath(schedule, **(schedule_options or {})),
            build_path_network(event_shape, 0, network),
            teacher=teacher,
            internal_teacher=mode == "distillation",
            teacher_network=teacher_network,
            target_decay=target_decay,
        )
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data!r}")
        self.mode, self.sigma_data, self.teacher_sampler = mode, float(sigma_data), teacher_sampler
        self.loss_kind, self.spacing, self.weighting = loss, spacing, weighting
        self.n_min = check_positive_int(n_min, "n_min")
        self.n_max = check_positive_int(n_max, "n_max")
        if self.n_max < self.n_min:
            raise ValueError(f"need n_min <= n_max, got {n_min} > {n_max}")
        self.curriculum_steps = check_positive_int(curriculum_steps, "curriculum_steps")
        self.p_mean, self.p_std = p_mean, float(p_std)
        self.default_steps = self.check_steps(steps)
        self.renoise_time = None
        if renoise_time is not None:  # a time of the path, strictly inside (t_min, t_max)
            r = check_probability(renoise_time, "renoise_time")
            if not self.path.t_min < r < self.path.t_max:
                raise ValueError(
                    f"renoise_time must lie strictly between t_min = {self.path.t_min} and "
                    f"t_max = {self.path.t_max}, got {r}; None keeps the uniform grid"
                )
            self.renoise_time = r
        self.huber_c = 0.00054 * math.sqrt(self.dim)
        self.prediction = None if prediction is None else Prediction(prediction)

    # -- the consistency function ----------------------------------------------------------
    def consistency(self, x: torch.Tensor, t: torch.Tensor, network=None) -> torch.Tensor:
        """``f(x, t) = c_skip x + c_out F(x, t)`` ``(batch, *event)``, or with ``prediction``
        set ``c_skip x + (1 - c_skip) x0_hat(x, t)``; ``t`` ``(batch,)``."""
        c_skip, c_out = boundary_coefficients(self.path, t, self.sigma_data, self.path.t_min)
        out = (network or self.network)(x, t)
        if self.prediction is not None:  # a prediction of the hub: blend x with its x0_hat
            out = convert(out, self.prediction, Prediction.X0, x, t, self.path)
            c_out = 1.0 - c_skip
        return append_dims(c_skip, x) * x + append_dims(c_out, x) * out

    def init_from_teacher(self) -> None:
        """Start the online and target networks from the teacher's network (needs
        ``prediction`` equal to the teacher's kind, an unpreconditioned teacher and the same
        architecture)."""
        field = self.teacher_field
        if self.prediction is None or getattr(field, "prediction", None) is not self.prediction:
            raise ValueError(
                f"init_from_teacher needs prediction={getattr(field, 'prediction', None)!r} "
                f"(the teacher's kind); this model has prediction={self.prediction!r}"
            )
        super().init_from_teacher()

    def grid(self) -> torch.Tensor:
        """The current discretisation ``t_max = ts[0] > ... > ts[N] = t_min`` (float64)."""
        k = int(self.train_steps)
        n = curriculum_steps_at(k, self.curriculum_steps, self.n_min, self.n_max)
        return make_grid(self.path, n, self.spacing, final_zero=False)

    def map_loss(self, x0: torch.Tensor, cond=None) -> torch.Tensor:
        ts = self.grid()
        n_int = len(ts) - 1
        if self.p_mean is None:
            probs = torch.full((n_int,), 1.0 / n_int, dtype=torch.float64)
        else:
            probs = lognormal_index_weights(self.path, ts, self.p_mean, self.p_std)
        idx = torch.multinomial(probs, len(x0), replacement=True)
        t_hi = ts[idx].to(x0)
        t_lo = ts[idx + 1].to(x0)
        eps = torch.randn_like(x0)
        x_hi = self.path.sample(x0, t_hi, eps=eps).x_t
        with torch.no_grad():
            if self.mode == "training":
                x_lo = self.path.sample(x0, t_lo, eps=eps).x_t
            else:
                times = torch.stack([t_hi, t_lo], dim=1)
                x_lo = teacher_solve(self.teacher_field, x_hi, times, sampler=self.teacher_sampler)
            target = self.consistency(x_lo, t_lo, self.target_network())
        pred = self.consistency(x_hi, t_hi)
        if self.loss_kind == "l2":
            dist = (pred - target).reshape(len(x0), -1).pow(2).mean(1)
        else:
            dist = pseudo_huber(pred, target, self.huber_c)
        if self.weighting == "uniform":
            return dist
        weight = 1.0 / (n_int * (t_hi - t_lo))
        return weight * dist

    # -- sampling --------------------------------------------------------------------------
    def sample_times(self, steps: int) -> list[float]:
        """Times of multistep consistency sampling: ``t_max`` and ``steps - 1`` points of a
        uniform grid in ``t`` (Song et al. 2023, Alg. 1), from ``renoise_time`` down if set."""
        if self.renoise_time is None or steps == 1:
            return make_grid(self.path, steps, "uniform", final_zero=False)[:-1].tolist()
        r = self.renoise_time
        below = make_grid(self.path, steps - 1, "uniform", t_max=r, final_zero=False)
        return [self.path.t_max, *below[:-1].tolist()]

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        times: list[float] | None = None,
        x_init: torch.Tensor | None = None,
        clip_x0: tuple[float, float] | None = None,
    ) -> torch.Tensor:
        """Multistep consistency sampling (Song et al. 2023, Alg. 1), ``(n, *event_shape)``.

        ``x0 = f(x_T, t_max)``; for each later time ``tau``: ``x = alpha_tau x0 + sigma_tau z``,
        ``x0 = f(x, tau)``. One NFE per time (``steps``, or ``times`` given explicitly).
        ``clip_x0=(low, high)`` clamps every ``x0`` to the data range (bounded data): an
        estimate outside it is re-noised into a point off the path's marginal.
        """
        clip = check_clip(clip_x0)
        x = self.start(n, cond, generator, x_init)
        n = len(x)
        if times is None:
            times = self.sample_times(self.check_steps(steps or self.default_steps))
        x0 = self.consistency(x, self.expand(times[0], n))
        for tau in times[1:]:
            if clip is not None:
                x0 = x0.clamp(*clip)
            t = self.expand(tau, n)
            v = self.path(t)
            z = torch.randn(x0.shape, generator=generator, device=self.device, dtype=self.dtype)
            x = append_dims(v.alpha, x0) * x0 + append_dims(v.sigma, x0) * z
            x0 = self.consistency(x, t)
        if clip is not None:
            x0 = x0.clamp(*clip)
        return self._record(x0, len(times))
