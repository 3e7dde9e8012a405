"""Route 3 models (survey §3.3): ``FlowMatching`` (CFM / OT-CFM) and ``RectifiedFlow`` (reflow).

Both are a :class:`~probpath.sampling.path_model.PathModel` on the linear path
``x_t = (1 - t) x0 + (sigma_min + (1 - sigma_min) t) eps`` with a velocity network, trained
by conditional flow matching (Eq. 62) under a data-noise coupling
(:mod:`probpath.velocity.couplings`).

Time: probpath's ``t = 0`` is data, ``t = 1`` noise; the papers' ``tau = 1 - t`` runs from
noise to data and their velocity is minus ours (converted here, at the boundary).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from probpath.core.model import Capabilities
from probpath.core.validation import check_choice, check_positive_int
from probpath.paths.affine import AffinePath
from probpath.sampling.path_model import PathModel, build_path_network
from probpath.sampling.samplers import default_grid, get_sampler
from probpath.sampling.timesteps import make_grid
from probpath.velocity.couplings import COUPLINGS, get_coupling, within_classes
from probpath.velocity.objectives import cfm_loss

__all__ = ["FlowMatching", "RectifiedFlow"]


class FlowMatching(PathModel):
    """Conditional flow matching (Lipman et al. 2023; survey §3.3, Eq. 61-64), CFM or OT-CFM.

    Args:
        event_shape: shape of one sample.
        num_classes: labels for a class-conditional network.
        coupling: ``"independent"`` (CFM) or ``"ot"`` (exact minibatch OT-CFM, Tong et al.).
        sigma_min: width of the conditional path at the data end (0: straight lines).
        prediction: what the network predicts (``"velocity"``).
        network: reference-network options.
        sampler, steps: default ``"heun"`` with 10 steps on a uniform grid ending at t = 0.
        sampler_options, likelihood_steps, likelihood_trace, p_uncond: see :class:`PathModel`.

    With labels (``num_classes > 0``) the OT coupling pairs data and noise within each class
    (:func:`~probpath.velocity.couplings.within_classes`), so the straightened paths of a
    class stay that class's.

    >>> m = FlowMatching((2,), coupling="ot", network={"hidden": [16]})
    >>> m.loss(torch.randn(8, 2)).shape
    torch.Size([8])
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        route="velocity", section="§3.3", exact_log_prob=True, has_score=True, accepts_labels=True
    )
    likelihood_t0 = 0.0  # the linear path's velocity is regular at t = 0

    def __init__(
        self,
        event_shape: tuple[int, ...],
        num_classes: int = 0,
        coupling: str = "independent",
        sigma_min: float = 0.0,
        prediction: str = "velocity",
        network: dict[str, Any] | None = None,
        sampler: str = "heun",
        steps: int = 10,
        sampler_options: dict[str, Any] | None = None,
        likelihood_steps: int | None = None,
        likelihood_trace: str = "auto",
        p_uncond: float = 0.1,
    ):
        check_choice(coupling, "coupling", tuple(COUPLINGS))
        super().__init__(
            event_shape,
            AffinePath("linear", sigma_min=sigma_min),
            prediction,
            build_path_network(tuple(event_shape), num_classes, network),
            sampler=sampler,
            steps=steps,
            sampler_options=sampler_options,
            likelihood_steps=likelihood_steps,
            likelihood_trace=likelihood_trace,
            p_uncond=p_uncond,
        )
        self.coupling = coupling
        self._couple = get_coupling(coupling)

    def grid_defaults(self, sampler: str, steps: int) -> dict[str, Any]:
        spec = get_sampler(sampler)
        # samplers that divide by alpha start just below t = 1, where the path's marginal is
        # N(0, I) up to alpha = 1e-3; the others start at t = 1 (alpha = 0)
        t_max = 1.0 - 1e-3 if spec.needs_alpha else 1.0
        if spec.spacing == "uniform":
            # uniform steps to t = 0 (v is regular at both ends; no extra step)
            return {"grid": make_grid(self.path, steps, "uniform", t_max=t_max, t_min=0.0)}
        return {
            "grid": default_grid(
                self.path, steps, spec, t_max=t_max, sigma_data=self.data_std, dim=self.dim
            )
        }

    def sample_t(self, n: int) -> torch.Tensor:
        return torch.rand(n, device=self.device, dtype=self.dtype)

    def loss(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        eps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """CFM, Eq. (62), ``t ~ U[0, 1]``; ``eps`` fixes the paired noise (reflow)."""
        x = self.check_input(x)
        if eps is not None:
            eps = self.check_input(eps, "eps")
            if eps.shape != x.shape:
                raise ValueError(f"eps must have x's shape {tuple(x.shape)}")
        coupling = self._couple if eps is None else COUPLINGS["independent"]
        labels = self._cond(cond, len(x))
        if labels is not None and coupling is not COUPLINGS["independent"]:
            coupling = within_classes(coupling, labels)
        return cfm_loss(
            self.field,
            x,
            self.sample_t(len(x)),
            eps=eps,
            coupling=coupling,
            cond=self._train_cond(labels, len(x)),
        )


class RectifiedFlow(FlowMatching):
    """Rectified flow with reflow (Liu et al. 2023; survey §3.3-§3.4).

    The first round is CFM on the straight path with the independent coupling. Reflow
    (:meth:`reflow`) then simulates the learned ODE from fresh noise ``eps`` to ``x0 =
    ODE(eps)`` and retrains on those deterministic pairs: the new coupling has straighter,
    non-crossing paths, so 1- and 2-step Euler sampling (``sample(n, steps=1)``) becomes
    accurate. The number of reflow rounds done is saved with the weights (``reflow_rounds``).

    Args:
        event_shape, num_classes, sigma_min, prediction, network: as :class:`FlowMatching`.
        sampler, steps: default ``"euler"``, 20 steps.
        sampler_options, likelihood_steps, likelihood_trace, p_uncond: see :class:`PathModel`.
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        num_classes: int = 0,
        sigma_min: float = 0.0,
        prediction: str = "velocity",
        network: dict[str, Any] | None = None,
        sampler: str = "euler",
        steps: int = 20,
        sampler_options: dict[str, Any] | None = None,
        likelihood_steps: int | None = None,
        likelihood_trace: str = "auto",
        p_uncond: float = 0.1,
    ):
        super().__init__(
            event_shape,
            num_classes,
            coupling="independent",
            sigma_min=sigma_min,
            prediction=prediction,
            network=network,
            sampler=sampler,
            steps=steps,
            sampler_options=sampler_options,
            likelihood_steps=likelihood_steps,
            likelihood_trace=likelihood_trace,
            p_uncond=p_uncond,
        )
        self.register_buffer("reflow_rounds", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def reflow_pairs(
        self,
        n: int,
        *,
        sampler: str = "rk4",
        steps: int = 25,
        batch_size: int = 1024,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair ``n`` noise draws with the current model's ODE images: ``(x0, eps)``.

        Args:
            n: number of pairs.
            sampler, steps: the ODE solver used to simulate the flow (``"rk4"``, 25 steps).
            batch_size: pairs simulated at once.
            cond: labels ``(n,)`` for a conditional network.
            generator: for the noise.

        Returns:
            ``x0`` and ``eps``, each ``(n, *event_shape)``.
        """
        n = check_positive_int(n, "n")
        eps = self.path.prior_sample(
            (n, *self.event_shape), generator=generator, device=self.device, dtype=self.dtype
        )
        x0 = torch.empty_like(eps)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            x0[start:stop] = self.sample(
                stop - start,
                cond=None if cond is None else cond[start:stop],
                sampler=sampler,
                steps=steps,
                x_init=eps[start:stop],
            )
        return x0, eps

    def reflow(
        self,
        n_pairs: int = 10_000,
        *,
        train_steps: int = 2000,
        batch_size: int = 256,
        lr: float = 1e-3,
        sampler: str = "rk4",
        steps: int = 25,
        generator: torch.Generator | None = None,
    ) -> list[float]:
        """One reflow round: simulate pairs with the current model, then retrain on them.

        A plain Adam loop (the model keeps its weights as the starting point, as in Liu et
        al.); ``reflow_rounds`` is incremented.

        Args:
            n_pairs: noise-data pairs to simulate.
            train_steps, batch_size, lr: the retraining loop.
            sampler, steps: the ODE solver of :meth:`reflow_pairs`.
            generator: for the noise and the minibatch order (the time draws use torch's
                global generator, as in :meth:`loss`).

        Returns:
            The loss of every training step.
        """
        train_steps = check_positive_int(train_steps, "train_steps")
        batch_size = check_positive_int(batch_size, "batch_size")
        x0, eps = self.reflow_pairs(n_pairs, sampler=sampler, steps=steps, generator=generator)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        history = []
        for _ in range(train_steps):
            idx = torch.randint(0, len(x0), (batch_size,), generator=generator).to(self.device)
            loss = self.loss(x0[idx], eps=eps[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(loss.item())
        self.reflow_rounds += 1
        return history
