"""Route 2 models (survey §2.3-§2.5): ``DiffusionModel`` (DDPM), ``NCSN`` and ``ScoreSDE``.

All three are a :class:`~probpath.sampling.path_model.PathModel` — a network on an affine path
with a native prediction — and differ only in the path, the law of the training time and the
weighting of the denoising loss (:mod:`probpath.score.objectives`):

=================  ======================  =====================  ===========================
model              path                    training time          loss
=================  ======================  =====================  ===========================
``DiffusionModel`` discrete VP (DDPM)      ``t = i / N``          ``L_simple`` (Eq. 41) or
                                                                  the bound (Eq. 38)
``NCSN``           VE, geometric sigma     one of L levels        Eq. 33, ``lambda = sigma^2``
``ScoreSDE``       VP / VE / sub-VP SDE    ``U[t_min, 1]``        Eq. 44 with a weighting
=================  ======================  =====================  ===========================

Sampling uses the shared samplers (any of them works for any model) and ``log_prob`` the
probability-flow ODE (survey Eq. 55).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from probpath.core.model import Capabilities
from probpath.core.validation import check_choice, check_positive_int
from probpath.paths.affine import AffinePath
from probpath.sampling.path_model import PathModel, build_path_network
from probpath.sampling.samplers import get_sampler, range_rule_grid
from probpath.score.objectives import (
    WEIGHTINGS,
    VLBTerms,
    ddpm_vlb,
    ddpm_vlb_loss,
    eps_weight,
    weighted_dsm_loss,
)

__all__ = ["DiffusionModel", "NCSN", "ScoreSDE"]


class DiffusionModel(PathModel):
    """Denoising diffusion probabilistic model (Ho et al. 2020; survey §2.4, Eq. 34-41).

    Args:
        event_shape: shape of one sample, ``(D,)`` or ``(C, H, W)``.
        num_classes: labels for a class-conditional network (0: unconditional).
        betas: ``"linear"`` (1e-4 to 0.02) or ``"cosine"`` schedule of ``beta_i``.
        num_steps: ``N``, the number of diffusion steps (step ``i`` is ``t = i / N``).
        prediction: what the network predicts (``"eps"`` as in DDPM; ``"x0"``, ``"v"``, ...).
        objective: ``"simple"`` (``L_simple``, Eq. 41) or ``"vlb"`` (the one-step estimate of
            the bound, Eq. 38, in nats per dimension).
        variance: the reverse-step variance ``sigma_t^2`` of the bound and of ancestral
            sampling: ``"small"`` (``beta_tilde_t``, the posterior variance; diffusers'
            ``fixed_small`` default) or ``"large"`` (``beta_t``). Ho et al. report both
            give similar samples for a well-trained model; after a short training the small
            one leaves less noise in the samples (digits, 5 minutes: feature-space precision
            0.786 -> 0.822, ``benchmarks/README.md``).
        network: keyword options of the reference network (TimeMLP / UNet).
        sampler, steps: default sampler: the full ancestral chain of Ho et al. (Eq. 39,
            ``steps = num_steps`` on the uniform grid, as diffusers' ``DDPMPipeline``).
            Shorter ancestral chains lose quality fast (moons, 1 minute of training,
            SW2 / noise floor: 1.04 at 1000 steps, 1.18 at 200, 1.79 at 100).
            ODE solvers such as
            ``sampler="dpmpp_2m", steps=20`` need far fewer evaluations, but with
            ``prediction="eps"`` they amplify the network's error at high noise: near
            ``t = 1`` the exact ``eps`` is almost ``x / sigma`` (Jacobian ≈ identity), a
            short-trained MLP's Jacobian is off by ±30 %, and along the flow
            ``d x_tilde / d sigma_tilde = eps_hat`` that error grows as a power of
            ``sigma / alpha`` (~160 -> 1 on this schedule; see
            ``tests/sampling/test_ddpm_ode_regression.py``). Stochastic samplers add fresh
            noise each step and do not compound it. Remedies: ``prediction="v"`` (catalog
            ``ddpm-v``; its high-noise target is nearly ``x``-free), or clamp ``x0_hat`` to
            the data range with ``sample(..., clip_x0=(-1, 1))``.
        sampler_options: more default sampler options.
        likelihood_steps, likelihood_trace, p_uncond: see :class:`PathModel`.

    >>> m = DiffusionModel((2,), network={"hidden": [16]}, num_steps=100)
    >>> m.loss(torch.randn(4, 2)).shape
    torch.Size([4])
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="score", section="§2.4", exact_log_prob=True, has_score=True, accepts_labels=True
    )

    def __init__(
        self,
        event_shape: tuple[int, ...],
        num_classes: int = 0,
        betas: str = "linear",
        num_steps: int = 1000,
        prediction: str = "eps",
        objective: str = "simple",
        variance: str = "small",
        network: dict[str, Any] | None = None,
        sampler: str = "ancestral",
        steps: int | None = None,
        sampler_options: dict[str, Any] | None = None,
        likelihood_steps: int | None = None,
        likelihood_trace: str = "auto",
        p_uncond: float = 0.1,
    ):
        check_choice(objective, "objective", ("simple", "vlb"))
        steps = num_steps if steps is None else steps
        check_choice(variance, "variance", ("small", "large"))
        path = AffinePath("ddpm", betas=betas, num_steps=num_steps)
        # Eq. 39 on the training grid t_i = i / N (uniform), with the model's sigma_t^2
        sigma2 = {"small": "beta_tilde", "large": "beta"}[variance]
        options = {"variance": sigma2, "grid": "uniform"} if sampler == "ancestral" else {}
        options.update(sampler_options or {})
        super().__init__(
            event_shape,
            path,
            prediction,
            build_path_network(tuple(event_shape), num_classes, network),
            sampler=sampler,
            steps=steps,
            sampler_options=options,
            likelihood_steps=likelihood_steps,
            likelihood_trace=likelihood_trace,
            p_uncond=p_uncond,
        )
        self.num_steps, self.objective, self.variance = num_steps, objective, variance

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``L_simple`` (Eq. 41) at ``t = i / N``, ``i ~ U{1..N}``, or the bound (Eq. 38)."""
        x = self.check_input(x)
        cond = self._train_cond(cond, len(x))
        if self.objective == "vlb":
            nats = ddpm_vlb_loss(self.field, x, self.num_steps, variance=self.variance, cond=cond)
            return nats / self.dim
        i = torch.randint(1, self.num_steps + 1, (len(x),), device=self.device)
        return weighted_dsm_loss(self.field, x, i.to(x.dtype) / self.num_steps, cond=cond)

    def vlb(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> VLBTerms:
        """The full variational bound of Eq. (38) (``N`` network calls); ``.total`` in nats,
        ``.bits_per_dim(model.dim)`` in bits/dim."""
        x = self.check_input(x)
        return ddpm_vlb(
            self.field,
            x,
            self.num_steps,
            variance=self.variance,
            cond=self._cond(cond, len(x)),
            generator=generator,
        )


class NCSN(PathModel):
    """Noise-conditional score network (Song & Ermon 2019; survey §2.3, Eq. 32-33).

    The ``L`` noise levels ``sigma_1 > ... > sigma_L`` are geometric, i.e. the VE path
    ``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` at ``t_j = j / (L - 1)``; the loss is
    Eq. (33) with ``lambda(sigma) = sigma^2``: ``1/2 ||sigma s_theta(x_tilde, sigma) +
    z||^2``. The network predicts ``eps`` (``s = -eps_hat / sigma``, NCSNv2's output scaling);
    sampling is annealed Langevin dynamics over the same levels.

    Args:
        event_shape: shape of one sample.
        num_classes: labels for a class-conditional network.
        sigma_min, sigma_max: smallest and largest noise (``sigma_max`` about the largest
            distance between data points, Song & Ermon 2020).
        num_scales: ``L``.
        prediction: ``"eps"`` (default) or ``"score"``.
        network: reference-network options.
        sampler, steps: default ``"annealed_langevin"`` over the ``L`` levels.
        sampler_options: default ``{"n_steps": 100, "step_size": 2e-5}`` per level
            (``step_size`` is the step at ``sigma_min``, scaled by ``sigma_i^2 / sigma_L^2``).
        likelihood_steps, likelihood_trace, p_uncond: see :class:`PathModel`.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="score", section="§2.3", exact_log_prob=True, has_score=True, accepts_labels=True
    )

    def __init__(
        self,
        event_shape: tuple[int, ...],
        num_classes: int = 0,
        sigma_min: float = 0.01,
        sigma_max: float = 10.0,
        num_scales: int = 10,
        prediction: str = "eps",
        network: dict[str, Any] | None = None,
        sampler: str = "annealed_langevin",
        steps: int | None = None,
        sampler_options: dict[str, Any] | None = None,
        likelihood_steps: int | None = None,
        likelihood_trace: str = "auto",
        p_uncond: float = 0.1,
    ):
        levels = check_positive_int(num_scales, "num_scales")
        if levels < 2:
            raise ValueError(f"num_scales must be >= 2, got {num_scales}")
        options = {"n_steps": 100, "step_size": 2e-5}
        options.update(sampler_options or {})
        if sampler == "annealed_langevin":
            options.setdefault("grid", torch.linspace(1.0, 0.0, levels).tolist())
        super().__init__(
            event_shape,
            AffinePath("ve", sigma_min=sigma_min, sigma_max=sigma_max),
            prediction,
            build_path_network(tuple(event_shape), num_classes, network),
            sampler=sampler,
            steps=steps or levels,
            sampler_options=options,
            likelihood_steps=likelihood_steps,
            likelihood_trace=likelihood_trace,
            p_uncond=p_uncond,
        )
        self.num_scales = levels

    def noise_levels(self) -> torch.Tensor:
        """``sigma_1 > ... > sigma_L`` (float64)."""
        t = torch.linspace(1.0, 0.0, self.num_scales, dtype=torch.float64)
        return self.path(t).sigma

    def sample_t(self, n: int) -> torch.Tensor:
        j = torch.randint(0, self.num_scales, (n,), device=self.device)
        return j.to(self.dtype) / (self.num_scales - 1)

    def grid_defaults(self, sampler: str, steps: int) -> dict[str, Any]:
        return {"t_min": 1e-5}  # sigma(0) = sigma_min > 0; the final step denoises

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. (33): ``1/2 ||eps_hat - z||^2`` at a uniformly drawn level (mean over dims)."""
        x = self.check_input(x)
        t = self.sample_t(len(x))
        return 0.5 * weighted_dsm_loss(self.field, x, t, cond=self._train_cond(cond, len(x)))


class ScoreSDE(PathModel):
    """Score-based generative model through an SDE (Song et al. 2021; survey §2.5, Eq. 42-48).

    The forward SDE is VP (Eq. 48), VE (Eq. 46) or sub-VP; the loss is the weighted
    continuous DSM of Eq. (44), ``t ~ U[t_min, 1]``, with ``lambda(t)`` from
    :func:`~probpath.score.objectives.eps_weight` (``"score"``: ``sigma^2``,
    ``"likelihood"``: ``g^2``, ``"uniform"``: 1). Default sampling integrates the reverse SDE
    (Eq. 43) by Euler-Maruyama; the probability-flow ODE samplers work too.

    Args:
        event_shape: shape of one sample.
        num_classes: labels for a class-conditional network.
        sde: ``"vp"``, ``"ve"`` or ``"subvp"``.
        schedule: the SDE's options (``beta_min``/``beta_max``, ``sigma_min``/``sigma_max``).
        weighting: ``lambda(t)``, one of ``"score"``, ``"likelihood"``, ``"uniform"``.
        prediction: what the network predicts (``"eps"``: ``s = -eps_hat / sigma``).
        network, sampler, steps, sampler_options, likelihood_steps, likelihood_trace,
            p_uncond: see :class:`PathModel`. Default: ``"euler_maruyama"`` with ``N = 1000``
            steps, Song et al.'s setting; coarser grids leave visible noise after a short training
            (digits, 5 minutes: feature-space precision 0.808 at 1000 steps, 0.763 at 100).
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="score", section="§2.5", exact_log_prob=True, has_score=True, accepts_labels=True
    )

    def __init__(
        self,
        event_shape: tuple[int, ...],
        num_classes: int = 0,
        sde: str = "vp",
        schedule: dict[str, Any] | None = None,
        weighting: str = "score",
        prediction: str = "eps",
        network: dict[str, Any] | None = None,
        sampler: str = "euler_maruyama",
        steps: int = 1000,
        sampler_options: dict[str, Any] | None = None,
        likelihood_steps: int | None = None,
        likelihood_trace: str = "auto",
        p_uncond: float = 0.1,
    ):
        check_choice(sde, "sde", ("vp", "ve", "subvp"))
        check_choice(weighting, "weighting", WEIGHTINGS)
        super().__init__(
            event_shape,
            AffinePath(sde, **(schedule or {})),
            prediction,
            build_path_network(tuple(event_shape), num_classes, network),
            sampler=sampler,
            steps=steps,
            sampler_options=sampler_options,
            likelihood_steps=likelihood_steps,
            likelihood_trace=likelihood_trace,
            p_uncond=p_uncond,
        )
        self.sde, self.weighting = sde, weighting

    def grid_defaults(self, sampler: str, steps: int) -> dict[str, Any]:
        """The data-derived range (:meth:`PathModel.grid_defaults`) for the deterministic
        log-SNR samplers once ``data_std`` is known; otherwise the whole range, stopping at
        ``t = 1e-5`` on VP / sub-VP (where ``sigma(0) = 0``)."""
        grid = range_rule_grid(self.path, steps, get_sampler(sampler), self.data_std, self.dim)
        if grid is not None:
            return {"grid": grid}
        return {"t_min": 1e-5} if self.path.t_min == 0.0 else {}

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. (44) in noise units: ``(lambda(t) / sigma_t^2) ||eps_hat - eps||^2``."""
        x = self.check_input(x)
        t = self.sample_t(len(x))
        w = None if self.weighting == "score" else eps_weight(self.weighting, t, self.path)
        return weighted_dsm_loss(self.field, x, t, weight=w, cond=self._train_cond(cond, len(x)))
