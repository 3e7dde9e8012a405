"""Stochastic interpolants / SiT (Albergo et al. 2023; Ma et al. 2024): one velocity network,
ODE or SDE sampling with a tunable diffusion coefficient ``w(t)``.

The interpolant is the shared affine path ``x_t = alpha_t x0 + sigma_t eps`` (t = 0 data,
t = 1 noise), linear (``alpha = 1 - t``, ``sigma = t``) or GVP (``alpha = cos(pi t / 2)``,
``sigma = sin(pi t / 2)``). A velocity network ``v(x, t)`` trained by Eq. (62) also gives the
score through the conversion hub (``score = -eps_hat / sigma_t``), so a whole family of
samplers shares the marginals ``p_t``:

**Derivation (our time convention).** For any ``w(t) >= 0`` the forward-time SDE
``dx = [v + (w^2 / 2) grad log p_t] dt + w dW`` has Fokker-Planck equation
``d_t p = -div(p v) - (w^2 / 2) div(p grad log p) + (w^2 / 2) Laplace p = -div(p v)``
(since ``p grad log p = grad p``), the continuity equation of the probability-flow ODE
``dx/dt = v``: the same marginals for every ``w``. Sampling runs it backwards, from
``t = 1`` to ``t = 0``; in the reverse time ``s = 1 - t`` the SDE with marginals ``p_{1-s}``
is ``dx = [-v + (w^2 / 2) grad log p_t] ds + w dW_s`` (its Fokker-Planck equation is
``d_s p = div(p v) = -d_t p``). One Euler-Maruyama step from ``t_i`` down to
``t_{i+1} = t_i - h``:

    x <- x - h v(x, t_i) + h (w^2 / 2) score(x, t_i) + w sqrt(h) z,    z ~ N(0, I).

``w = 0`` is the probability-flow ODE (Euler); ``w = g(t)``, the path's own SDE diffusion
(Eq. 42), is the reverse-time SDE of score SDEs (Eq. 43): ``v - (g^2/2) score`` equals
``f x - g^2 score``. SiT writes the same family with time running from noise to data
(``tau = 1 - t``, velocity ``-v``) and ``w_t`` for our ``w(t)^2``; we keep probpath's time.

The step is the registered sampler ``interpolant_sde``
(:mod:`probpath.sampling.sde`; options ``diffusion``, ``scale``): every path model can use it,
``model.sample(n, sampler="interpolant_sde", diffusion="sigma")``, since the conversion hub
gives both the velocity and the score from one network.

References:
    Albergo, Boffi & Vanden-Eijnden, "Stochastic Interpolants: A Unifying Framework for
    Flows and Diffusions", 2023, §2.4 (Eq. 2.31-2.34). Ma et al., "SiT: Exploring Flow and
    Diffusion-based Generative Models with Scalable Interpolant Transformers", 2024, §3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from probpath.core.validation import check_choice, check_positive_int
from probpath.paths.affine import AffinePath
from probpath.paths.field import PathField
from probpath.sampling.sde import DIFFUSIONS, diffusion_coefficient, sample_interpolant_sde
from probpath.sampling.timesteps import make_grid
from probpath.velocity.flow_matching import FlowMatching

__all__ = [
    "DIFFUSIONS",
    "INTERPOLANTS",
    "StochasticInterpolant",
    "diffusion_coefficient",
    "sample_interpolant_sde",
]

INTERPOLANTS = ("linear", "gvp")


class StochasticInterpolant(FlowMatching):
    """SiT's model (Ma et al. 2024): velocity prediction on a linear or GVP interpolant.

    Training is Eq. (62) on the chosen path (``t ~ U[0, 1]``, independent coupling); sampling
    is any shared ODE sampler (:meth:`sample`, default Heun) or the SDE family with a tunable
    ``w(t)`` (:meth:`sample_sde`).

    Args:
        event_shape: shape of one sample.
        num_classes: labels for a class-conditional network.
        interpolant: ``"gvp"`` (``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``, SiT's
            default) or ``"linear"``.
        prediction: what the network predicts (``"velocity"``; ``"score"`` etc. also train
            through the hub).
        network: reference-network options (``"dit"`` for the DiT backbone on images).
        sampler, steps: default ODE sampler (``"heun"``, 10 steps).
        diffusion, sde_steps: defaults of :meth:`sample_sde` (``"sigma"``, 50 steps).
        sampler_options, likelihood_steps, likelihood_trace: see
            :class:`~probpath.sampling.path_model.PathModel`.

    >>> m = StochasticInterpolant((2,), network={"hidden": [16]})
    >>> m.sample_sde(3, steps=4, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        num_classes: int = 0,
        interpolant: str = "gvp",
        prediction: str = "velocity",
        network: dict[str, Any] | str | None = None,
        sampler: str = "heun",
        steps: int = 10,
        diffusion: str = "sigma",
        sde_steps: int = 50,
        sampler_options: dict[str, Any] | None = None,
        likelihood_steps: int | None = None,
        likelihood_trace: str = "auto",
    ):
        check_choice(interpolant, "interpolant", INTERPOLANTS)
        check_choice(diffusion, "diffusion", tuple(DIFFUSIONS))
        super().__init__(
            event_shape,
            num_classes,
            prediction=prediction,
            network=network,
            sampler=sampler,
            steps=steps,
            sampler_options=sampler_options,
            likelihood_steps=likelihood_steps,
            likelihood_trace=likelihood_trace,
        )
        # FlowMatching built the linear path; SiT's interpolant replaces it
        self.path = AffinePath(interpolant)
        self.field = PathField(self.network, self.path, self.field.prediction)
        self.interpolant, self.diffusion = interpolant, diffusion
        self.sde_steps = check_positive_int(sde_steps, "sde_steps")

    @torch.no_grad()
    def sample_sde(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        steps: int | None = None,
        diffusion: str | Callable[[float], float] | None = None,
        scale: float = 1.0,
        t_max: float = 1.0,
    ) -> torch.Tensor:
        """``n`` samples by :func:`sample_interpolant_sde` on ``make_grid(path, steps,
        "uniform", t_max=t_max)`` (down to the path's ``t_min``, then the final step to
        ``t = 0``): ``steps`` NFE."""
        n = check_positive_int(n, "n")
        steps = check_positive_int(steps or self.sde_steps, "steps")
        grid = make_grid(self.path, steps, "uniform", t_max=t_max)
        shape = (n, *self.event_shape)
        x = self.path.prior_sample(shape, generator=generator, device=self.device, dtype=self.dtype)
        out = sample_interpolant_sde(
            self.field,
            x,
            grid,
            generator=generator,
            cond=self._cond(cond, n),
            diffusion=diffusion or self.diffusion,
            scale=scale,
        )
        self.sampling_nfe = len(grid) - 1
        return out
