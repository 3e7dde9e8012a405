"""Latent diffusion and latent flow matching (Rombach et al. 2022; survey §1.4).

A KL-regularised autoencoder (the :class:`~probpath.likelihood.vae.VAE`, a small conv net
for images, with a small KL weight) is trained first; then a path model (DDPM, CFM, ...)
learns the distribution of its latents, scaled to unit variance: ``z' = s z`` with the LDM
scale factor ``s = 1 / std(z)`` estimated on the training latents at the end of the
autoencoder stage. Sampling draws ``z'`` from the path model and decodes ``z = z' / s``.

**Stages.** ``train_step`` reads :attr:`~probpath.core.model.Model.budget_used` (the share
of the Trainer's step or time budget used, set by the Trainer before each step): while it is
below ``autoencoder_share`` the autoencoder trains (stage 0); the first step at or past it
freezes the autoencoder and the scale factor (``stage`` becomes 1, a saved buffer) and from
then on only the path model trains. With ``warm_prior`` the path model also takes one step
per stage-0 step on the current (detached) latents, so it is never untrained (a short budget
or an interrupted run still samples sensibly) and every parameter learns from the first
step. Resume is exact: ``stage``, ``scale`` and the Trainer's step / seconds are restored, so
the switch happens where it would have. Outside a Trainer (``budget_used is None``) the
model stays in stage 0 until :meth:`LatentModel.start_latent_stage` is called.

**Likelihood: a lower bound.** With ``p_Z(z) = p_theta(s z) s^d`` (change of variables of
the path model's density ``p_theta`` on scaled latents, ``d = latent_dim``) the model is
``p(x) = int p(x|z) p_Z(z) dz``, and for any encoder ``q(z|x)`` Jensen's inequality gives

    log p(x) >= E_q[log p(x|z)] + E_q[log p_theta(s z)] + d log s + H[q(z|x)],

the gap being ``KL(q(z|x) || p(z|x))``. The terms are: the decoder's reconstruction term, the
path model's probability-flow ODE log-density of the scaled latent (exact for the ODE's
density up to solver error; Hutchinson's estimate beyond 16 latent dimensions), the scale's
log-Jacobian, and the Gaussian encoder's entropy ``sum_j (log(2 pi e) + log sigma_j^2) / 2``
(closed form). :meth:`LatentModel.bound` returns them; ``log_prob`` their sum. The bound
is for the density the ODE defines; samplers other than an exact ODE solve draw from it
only approximately, as for every path model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from probpath.core.model import Capabilities, Model, OptimizerGroup, check_labels
from probpath.core.validation import check_event_shape, check_positive_int, check_probability
from probpath.likelihood.vae import VAE

__all__ = ["LatentBound", "LatentModel", "LatentDiffusion", "LatentFlowMatching", "latent_priors"]

_LOG_2PI_E = math.log(2 * math.pi) + 1.0


def latent_priors() -> dict[str, type]:
    """Path models that can model the latents, by name (``prior=NAME``)."""
    from probpath.score import DiffusionModel, ScoreSDE
    from probpath.score.edm import EDM
    from probpath.velocity import FlowMatching, RectifiedFlow
    from probpath.velocity.interpolants import StochasticInterpolant

    return {
        "diffusion": DiffusionModel,
        "score-sde": ScoreSDE,
        "edm": EDM,
        "flow-matching": FlowMatching,
        "rectified-flow": RectifiedFlow,
        "sit": StochasticInterpolant,
    }


@dataclass(frozen=True)
class LatentBound:
    """The terms of the latent model's lower bound on ``log p(x)``, each ``(batch,)`` nats.

    Attributes:
        reconstruction: ``E_q[log p(x|z)]`` (Monte Carlo over the encoder's draws).
        prior: ``E_q[log p_theta(s z)]``, the path model's ODE log-density of the latent.
        log_scale: ``d log s``, the log-Jacobian of the scaling ``z -> s z``.
        entropy: ``H[q(z|x)]`` of the Gaussian encoder (closed form).
    """

    reconstruction: torch.Tensor
    prior: torch.Tensor
    log_scale: torch.Tensor
    entropy: torch.Tensor

    @property
    def elbo(self) -> torch.Tensor:
        """The lower bound on ``log p(x)``: the sum of the four terms, ``(batch,)``."""
        return self.reconstruction + self.prior + self.log_scale + self.entropy


class LatentModel(Model):
    """A path model on the scaled latents of a KL-regularised autoencoder (see the module doc).

    Subclasses fix the route: :class:`LatentDiffusion` (score route) and
    :class:`LatentFlowMatching` (velocity route), each with the priors of its route.

    Args:
        event_shape: shape of one sample, ``(C, H, W)`` images (conv autoencoder) or
            ``(D,)`` vectors (MLP autoencoder).
        num_classes: ``K > 0`` makes the path model class-conditional (labels go to the path
            model only; the autoencoder is unconditional, as in LDM).
        latent_dim: ``d``, the size of the latent vector.
        kl_weight: the autoencoder's KL weight ``beta`` (small: a KL-*regularised*
            autoencoder, not a VAE whose prior is ``N(0, I)``).
        autoencoder: more :class:`~probpath.likelihood.vae.VAE` options (``channels``,
            ``hidden``, ``architecture``, ``decoder_std``, ...).
        prior: name of the path model (a key of :func:`latent_priors` allowed by the class).
        prior_options: the path model's options (``prediction``, ``network``, ``sampler``,
            ``steps``, ``likelihood_steps``, ...).
        autoencoder_share: share of the Trainer's budget spent in the autoencoder stage,
            in ``(0, 1)``. The default 0.6 and ``kl_weight = 0.1`` were chosen on digits
            (seed 1, 90 s of training on a shared CPU) among shares 0.3 / 0.6 and KL weights
            0.1 / 0.01 / 0.001 (held-out MMD² 0.081 / 0.053 and 0.081 / 0.083 / 0.45): an
            autoencoder step costs several path-model steps, and a short autoencoder stage
            leaves the latents uninformative.
        warm_prior: also train the path model during the autoencoder stage (on the moving
            latents).

    Shapes: ``loss(x)`` ``(batch, *event_shape) -> (batch,)``; ``sample(n)`` ``(n,
    *event_shape)``; latents ``(batch, latent_dim)``.

    References:
        Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models",
        CVPR 2022 (Sec. 3.1 and Appendix G: the KL-regularised autoencoder, the scale factor);
        Kingma & Welling 2014 (the bound).
    """

    capabilities: ClassVar[Capabilities]
    #: the prior names this class accepts, the first being the default
    PRIORS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        event_shape: tuple[int, ...],
        num_classes: int = 0,
        latent_dim: int = 16,
        kl_weight: float = 0.1,
        autoencoder: dict[str, Any] | None = None,
        prior: str | None = None,
        prior_options: dict[str, Any] | None = None,
        autoencoder_share: float = 0.6,
        warm_prior: bool = True,
    ):
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.num_classes = int(num_classes)
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        share = check_probability(autoencoder_share, "autoencoder_share")
        if not 0.0 < share < 1.0:
            raise ValueError(
                f"autoencoder_share must lie strictly between 0 and 1 (the autoencoder's share "
                f"of the training budget), got {autoencoder_share}"
            )
        self.autoencoder_share, self.warm_prior = share, bool(warm_prior)
        prior = self.PRIORS[0] if prior is None else prior
        if prior not in self.PRIORS:
            raise ValueError(
                f"prior must be one of {list(self.PRIORS)} for {type(self).__name__}, got {prior!r}"
            )
        ae_options = {"architecture": "conv" if len(self.event_shape) == 3 else "mlp"}
        ae_options.update(autoencoder or {})
        for key in ("latent_dim", "beta", "num_classes"):
            if key in ae_options:
                raise ValueError(
                    f"autoencoder option {key!r} is set by the latent model; use "
                    f"{'kl_weight' if key == 'beta' else key}= instead"
                )
        self.autoencoder = VAE(
            self.event_shape,
            latent_dim=self.latent_dim,
            beta=kl_weight,
            **{"sample_noise": False, **ae_options},
        )
        self.prior = latent_priors()[prior](
            (self.latent_dim,), num_classes=self.num_classes, **(prior_options or {})
        )
        # 0: autoencoder stage, 1: latent stage (autoencoder and scale frozen)
        self.register_buffer("stage", torch.zeros((), dtype=torch.long))
        self.register_buffer("scale", torch.ones(()))

    # -- the autoencoder and the scaled latents -------------------------------------------
    @property
    def sampling_nfe(self) -> int | None:
        """Network evaluations of the path model in the last ``sample`` (plus one decoder
        pass per sample, not counted: NFE as the LDM paper counts it)."""
        return self.prior.sampling_nfe

    @property
    def sampling_nfe_text(self) -> str | None:
        """``sampling_nfe`` as the survey prints it (``"N×2"`` with guidance)."""
        return self.prior.sampling_nfe_text

    def check_input(self, x) -> torch.Tensor:
        """Validate ``x`` ``(batch, *event_shape)``; moved to the model's device and dtype."""
        return self.autoencoder._check(x)

    def encode(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z ~ q(z|x)`` unscaled and the encoder's ``(mu, log_var)``, each ``(batch, d)``."""
        mu, log_var = self.autoencoder.encode(self.check_input(x))
        z, _ = self.autoencoder.posterior_sample(mu, log_var, generator)
        return z, mu, log_var

    def decode(self, z_scaled: torch.Tensor) -> torch.Tensor:
        """The decoder's mean of ``p(x | z = z_scaled / s)``, ``(batch, *event_shape)``."""
        ae = self.autoencoder
        return ae.observation.mean(ae.decode(z_scaled / self.scale))

    @torch.no_grad()
    def _training_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``s z``, ``z ~ q(z|x)``, of a training batch (no gradient). In
        stage 0, in training mode, the scale is first re-estimated on this batch: ``s = 1 /
        std(z)`` over all its entries (LDM's estimate), so at the switch it is the last
        autoencoder's."""
        z, _, _ = self.encode(x)
        if int(self.stage) == 0 and self.training and z.numel() > 1:
            self.scale.fill_(1.0 / z.std().clamp_min(1e-8))
        return z * self.scale

    def start_latent_stage(self) -> None:
        """Freeze the autoencoder and the scale factor: from now on only the path model
        trains (the Trainer calls this through ``budget_used``)."""
        self.stage.fill_(1)

    # -- training -------------------------------------------------------------------------
    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        """Two optimizers: ``"autoencoder"`` and ``"prior"`` (the path model)."""
        return {
            "autoencoder": OptimizerGroup(list(self.autoencoder.parameters())),
            "prior": OptimizerGroup(list(self.prior.parameters())),
        }

    def _labels(self, cond, n: int) -> torch.Tensor | None:
        return check_labels(
            cond, n, self.num_classes, type(self).__name__, null=True, device=self.device
        )

    def prior_loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The path model's loss on the scaled latents of ``x``, ``(batch,)``."""
        return self.prior.loss(self._training_latents(x), self._labels(cond, len(x)))

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The current stage's objective per sample: stage 0 the autoencoder's negative
        (beta-)ELBO plus, with ``warm_prior``, the path model's loss on the detached
        latents; stage 1 the path model's loss. ``(batch,)``."""
        x = self.check_input(x)
        cond = self._labels(cond, len(x))
        if int(self.stage) == 1:
            return self.prior_loss(x, cond)
        out = self.autoencoder.loss(x)
        return out + self.prior_loss(x, cond) if self.warm_prior else out

    def train_step(self, x: torch.Tensor, cond, step: int, update) -> dict[str, float]:
        """One Trainer step of the current stage (see the module doc); switches to stage 1
        when ``budget_used >= autoencoder_share``."""
        used = self.budget_used
        if int(self.stage) == 0 and used is not None and used >= self.autoencoder_share:
            self.start_latent_stage()
        x = self.check_input(x)
        cond = self._labels(cond, len(x))
        out = {"stage": float(self.stage)}
        if int(self.stage) == 0:
            ae_loss = self.autoencoder.loss(x).mean()
            update(ae_loss, "autoencoder")
            out["autoencoder_loss"] = float(ae_loss.detach())
            if not self.warm_prior:
                return out
        prior_loss = self.prior_loss(x, cond).mean()
        update(prior_loss, "prior")
        out["prior_loss"] = float(prior_loss.detach())
        return out

    # -- sampling and likelihood ----------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: bool | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Draw ``z' `` from the path model (``options``: its ``sampler``, ``steps``,
        ``guidance``, ...) and decode ``z' / s``: the decoder mean, or a draw of ``p(x|z)``
        with ``noise=True`` (default: the autoencoder's ``sample_noise``). ``(n,
        *event_shape)``."""
        n = check_positive_int(n, "n")
        z = self.prior.sample(n, cond=self._labels(cond, n), generator=generator, **options)
        ae = self.autoencoder
        out = ae.decode(z / self.scale)
        return ae.observation.draw(out, ae.sample_noise if noise is None else noise, generator)

    @torch.no_grad()
    def bound(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        n_samples: int = 1,
    ) -> LatentBound:
        """The four terms of the lower bound on ``log p(x)`` (module doc), Monte Carlo over
        ``n_samples`` encoder draws; ``generator`` (default: seeded with 0, so the same
        ``x`` gives the same bound) drives the draws and the path model's trace probes."""
        x = self.check_input(x)
        cond = self._labels(cond, len(x))
        n_samples = check_positive_int(n_samples, "n_samples")
        if generator is None:
            generator = torch.Generator(self.device).manual_seed(0)
        ae = self.autoencoder
        mu, log_var = ae.encode(x)
        rec = prior = 0.0
        for _ in range(n_samples):
            z, _ = ae.posterior_sample(mu, log_var, generator)
            rec = rec + ae.observation.log_prob(x, ae.decode(z))
            prior = prior + self.prior.log_prob(z * self.scale, cond, generator=generator)
        log_scale = self.latent_dim * torch.log(self.scale).expand(len(x))
        entropy = 0.5 * (_LOG_2PI_E + log_var).sum(-1)
        return LatentBound(rec / n_samples, prior / n_samples, log_scale, entropy)

    def log_prob(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A lower bound on ``log p(x)`` (:meth:`bound`'s ELBO, one encoder draw), ``(batch,)``."""
        return self.bound(x, cond, generator).elbo


class LatentDiffusion(LatentModel):
    """Latent diffusion (LDM): a diffusion / score model on the autoencoder's scaled latents.

    ``prior`` is ``"diffusion"`` (default; the catalog's ``ldm`` uses v-prediction and
    DPM-Solver++ 2M), ``"score-sde"`` or ``"edm"``. See :class:`LatentModel`.

    >>> m = LatentDiffusion((1, 8, 8), latent_dim=2, autoencoder={"channels": [4, 8]},
    ...                     prior_options={"network": {"hidden": [8]}, "steps": 2})
    >>> m.loss(torch.zeros(3, 1, 8, 8)).shape, m.sample(2).shape
    (torch.Size([3]), torch.Size([2, 1, 8, 8]))
    """

    capabilities = Capabilities(
        route="score", section="§1.4", log_prob_bound=True, has_score=False, accepts_labels=True
    )
    PRIORS = ("diffusion", "score-sde", "edm")


class LatentFlowMatching(LatentModel):
    """Flow matching on the autoencoder's scaled latents (the latent route of SD3 / SiT).

    ``prior`` is ``"flow-matching"`` (default, CFM), ``"rectified-flow"`` or ``"sit"``. See
    :class:`LatentModel`.
    """

    capabilities = Capabilities(
        route="velocity", section="§3.3", log_prob_bound=True, accepts_labels=True
    )
    PRIORS = ("flow-matching", "rectified-flow", "sit")
