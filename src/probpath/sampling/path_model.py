"""``PathModel``: the one base class of diffusion, score-SDE and flow-matching models.

A path model is a network on an affine path ``x_t = alpha_t x0 + sigma_t eps`` with a native
:class:`~probpath.paths.parameterization.Prediction` — i.e. a
:class:`~probpath.paths.field.PathField` — plus a training objective. Everything else is
shared: sampling goes through :func:`~probpath.sampling.samplers.sample_path` (any sampler
of :data:`~probpath.sampling.samplers.SAMPLER_SPECS`, NFE counted) and ``log_prob`` through the
probability-flow ODE likelihood (survey Eq. 55,
:func:`~probpath.sampling.likelihood.ode_log_prob`).
Subclasses (``DiffusionModel``, ``NCSN``, ``ScoreSDE`` in :mod:`probpath.score.diffusion`;
``FlowMatching``, ``RectifiedFlow`` in :mod:`probpath.velocity.flow_matching`) differ only in
path, prediction, time distribution and objective.

It lives in ``sampling/`` because both routes (score and velocity) build on it and the
routes never import each other.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from probpath.core.broadcast import append_dims
from probpath.core.model import Model, check_labels
from probpath.core.validation import (
    check_choice,
    check_event_shape,
    check_probability,
    check_tensor,
)
from probpath.paths.affine import AffinePath
from probpath.paths.field import PathField
from probpath.paths.parameterization import Prediction
from probpath.sampling.guidance import ClassifierFreeGuidance, ClassifierGuidance, format_nfe
from probpath.sampling.likelihood import ode_log_prob
from probpath.sampling.samplers import get_sampler, range_rule_grid, sample_path

__all__ = ["EventModel", "PathModel", "build_path_network"]


def build_path_network(
    event_shape: tuple[int, ...], num_classes: int = 0, options: dict | str | None = None
) -> nn.Module:
    """The reference network for data of ``event_shape``: a :class:`~probpath.nn.TimeMLP` for
    vectors ``(D,)``, a :class:`~probpath.nn.UNet` for images ``(C, H, W)``, or the
    :class:`~probpath.nn.DiT` transformer for images with ``options="dit"`` (``--set
    network=dit``) or ``{"arch": "dit", **its kwargs}``.

    ``options`` are the network's keyword arguments (JSON-able, e.g. ``{"hidden": [64, 64]}``).
    """
    from probpath.nn import DiT, TimeMLP, UNet

    options = dict({"arch": options} if isinstance(options, str) else options or {})
    arch = options.pop("arch", None)
    if arch not in (None, "dit"):
        raise ValueError(f"network arch must be 'dit' or omitted (the default), got {arch!r}")
    if arch == "dit":
        if len(event_shape) != 3:
            raise ValueError(f"network='dit' needs images (C, H, W); got event_shape {event_shape}")
        return DiT(event_shape, num_classes=num_classes, **options)
    if len(event_shape) == 1:
        return TimeMLP(event_shape[0], num_classes=num_classes, **options)
    if len(event_shape) == 3:
        return UNet(event_shape, num_classes=num_classes, **options)
    raise ValueError(
        f"no reference network for event_shape {event_shape}; flatten the data to (D,) or "
        "pass images as (C, H, W)"
    )


class EventModel(Model):
    """A :class:`Model` on samples of shape ``event_shape`` whose device and dtype are read
    from a ``_probe`` buffer (a 0-d tensor the subclass registers, ``persistent=False``).

    Shared by :class:`PathModel` and the few-step maps (``probpath.maps``)."""

    event_shape: tuple[int, ...]

    @property
    def device(self) -> torch.device:
        """Device of the model."""
        return self._probe.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model (float32 unless converted)."""
        return self._probe.dtype

    @property
    def dim(self) -> int:
        """Values per sample (``prod(event_shape)``)."""
        return math.prod(self.event_shape)

    def check_input(self, x, name: str = "x") -> torch.Tensor:
        """Validate ``x`` ``(batch, *event_shape)`` and move it to the model's device/dtype."""
        x = check_tensor(x, name, event_shape=self.event_shape)
        probe = self._probe
        if x.dtype != probe.dtype or x.device != probe.device:
            x = x.to(device=probe.device, dtype=probe.dtype)
        return x


class PathModel(EventModel):
    """A network on an affine path; subclasses define :meth:`loss` (and the time law).

    Args:
        event_shape: shape of one sample.
        path: the :class:`~probpath.paths.affine.AffinePath`.
        prediction: what the network predicts.
        network: ``network(x_t, t, cond) -> (batch, *event)``.
        sampler: default sampler name (a key of ``SAMPLER_SPECS``).
        steps: default number of sampler steps.
        sampler_options: default keyword options of ``sample_path`` (``grid``, ``t_min``,
            ``final_zero``, sampler options such as ``n_steps``).
        likelihood_steps: ``None`` for the adaptive dopri5 solve of the likelihood ODE, or a
            number of fixed RK4 steps (fast, for tests and quick comparisons).
        likelihood_trace: ``"auto"`` (exact divergence up to 16 dimensions, Hutchinson beyond),
            ``"exact"`` or ``"hutchinson"``.
        p_uncond: label dropout of a class-conditional network (Ho & Salimans 2022): during
            training each label is replaced by the "no label" index ``num_classes`` with this
            probability, so one network learns ``p(x | c)`` and ``p(x)`` for
            classifier-free guidance.

    A network with ``num_classes > 0`` (its attribute) makes the model class-conditional:
    ``loss(x, cond=y)`` trains ``p(x | y)`` and ``sample(n, cond=c, guidance=w)`` draws from it,
    with classifier-free guidance of weight ``w``
    (:class:`~probpath.sampling.guidance.ClassifierFreeGuidance`).

    Attributes:
        sampling_nfe: network evaluations per sample of the last :meth:`sample` call (``None``
            before the first call); ``compare`` reports it as the NFE column.
        likelihood_nfe: network evaluations of the last :meth:`log_prob` call.
        sampling_nfe_text: ``sampling_nfe`` as the survey prints it: ``"N×2"`` for guided
            sampling (``N`` steps of two network passes each), else ``"N"``.
        num_classes: labels of a class-conditional network (0: unconditional); the label
            ``num_classes`` is the "no label" (null) class.
    """

    likelihood_t0: ClassVar[float | None] = None  # None: the path's t_min

    def __init__(
        self,
        event_shape: tuple[int, ...],
        path: AffinePath,
        prediction: Prediction | str,
        network: nn.Module,
        *,
        sampler: str,
        steps: int,
        sampler_options: dict[str, Any] | None = None,
        likelihood_steps: int | None = None,
        likelihood_trace: str = "auto",
        p_uncond: float = 0.1,
    ):
        super().__init__()
        # a non-persistent scalar that follows .to(): O(1) device / dtype lookups on the hot
        # path (iterating the parameters costs more than the CFM objective itself)
        self.register_buffer("_probe", torch.zeros(()), persistent=False)
        # (count, mean, mean square) of every training value loss() saw, saved with the
        # weights: data_std, the sigma_data that scales the default sampling grid (#15)
        self.register_buffer("data_moments", torch.zeros(3))
        self.event_shape = check_event_shape(event_shape)
        get_sampler(sampler)
        check_choice(likelihood_trace, "likelihood_trace", ("auto", "exact", "hutchinson"))
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        self.network = network
        self.path = path
        self.field = PathField(network, path, prediction)
        self.default_sampler, self.default_steps = sampler, steps
        self.sampler_options = dict(sampler_options or {})
        self.likelihood_steps = likelihood_steps
        self.likelihood_trace = likelihood_trace
        self.sampling_nfe: int | None = None
        self.sampling_nfe_text: str | None = None
        self.likelihood_nfe: int | None = None
        self.num_classes = int(getattr(network, "num_classes", 0) or 0)
        self.p_uncond = check_probability(p_uncond, "p_uncond")

    # -- helpers ---------------------------------------------------------------------------
    def check_input(self, x, name: str = "x") -> torch.Tensor:
        """:meth:`EventModel.check_input`; in training mode the data batches ``x`` also update
        :attr:`data_moments` (what :attr:`data_std` is read from)."""
        x = super().check_input(x, name)
        if self.training and name == "x":
            with torch.no_grad():
                m, xf = self.data_moments, x.detach().flatten()
                m[0] += xf.numel()
                w = xf.numel() / float(m[0])
                m[1] += w * (xf.mean() - m[1])
                m[2] += w * (xf.pow(2).mean() - m[2])
        return x

    @property
    def data_std(self) -> float | None:
        """Standard deviation of the training data (all values pooled, as EDM's
        ``sigma_data``), recorded while fitting; ``None`` before any training batch. The
        samplers' ``sigma_data``."""
        n, mean, sq = self.data_moments.tolist()
        return math.sqrt(max(sq - mean * mean, 0.0)) if n > 0 else None

    def _cond(self, cond, n: int):
        """Validate labels ``(n,)`` in ``0..num_classes`` (``num_classes`` = no label)."""
        return check_labels(
            cond, n, self.num_classes, type(self).__name__, null=True, device=self.device
        )

    def _train_cond(self, cond, n: int):
        """Training labels: :meth:`_cond`, then label dropout to the null class (``p_uncond``)."""
        cond = self._cond(cond, n)
        if cond is None or not self.training or self.p_uncond == 0.0:
            return cond
        drop = torch.rand(n, device=cond.device) < self.p_uncond
        return torch.where(drop, torch.full_like(cond, self.num_classes), cond)

    def guided_field(
        self,
        cond,
        guidance: float | None = None,
        classifier=None,
        classifier_scale: float = 1.0,
        **options: Any,
    ):
        """The field sampled under ``cond``.

        ``guidance`` ``w`` (``None`` / 0: none): classifier-free guidance
        (:class:`~probpath.sampling.guidance.ClassifierFreeGuidance`, ``options``:
        ``interval``, ``rescale``). ``classifier(x_t, t) -> logits``: classifier guidance
        (:class:`~probpath.sampling.guidance.ClassifierGuidance`) of the unconditional field
        (the null label for a conditional network) with scale ``classifier_scale``.
        """
        if classifier is not None:
            if guidance:
                raise ValueError("pass either guidance (classifier-free) or classifier, not both")
            if cond is None:
                raise ValueError("classifier guidance needs labels: pass cond=labels")
            return ClassifierGuidance(self.field, classifier, classifier_scale)
        if guidance is None or (guidance == 0 and not options):
            return self.field
        if cond is None:
            raise ValueError("guidance needs class labels: pass cond=labels with guidance=w")
        return ClassifierFreeGuidance(self.field, guidance, self.num_classes, **options)

    # -- the contract ----------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        guidance_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Draw ``n`` samples ``(n, *event_shape)`` with any shared sampler (survey §2.4-§3.3).

        Args:
            n: number of samples (>= 1).
            cond: labels ``(n,)`` (or one label for all) for a class-conditional network.
            guidance: classifier-free guidance weight ``w``:
                ``(1 + w) f(x, t, c) - w f(x, t, null)``, two network passes per evaluation.
            guidance_options: ``interval`` / ``rescale`` of
                :class:`~probpath.sampling.guidance.ClassifierFreeGuidance`, or
                ``classifier`` (``(x_t, t) -> logits``, e.g.
                :func:`~probpath.sampling.guidance.fit_classifier`'s) and
                ``classifier_scale`` for classifier guidance of the labels ``cond``.
            generator: for the prior draw and the sampler's noise (reproducible samples).
            sampler: a key of ``SAMPLER_SPECS`` (default: the
                model's); e.g. ``"dpmpp_2m"``, ``"heun"``, ``"ancestral"``, ``"pc"``.
            steps: number of steps (default: the model's).
            **options: more ``sample_path`` options (``grid``, ``eta``, ``snr``, ...).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer number of samples, got {n!r}")
        name = sampler or self.default_sampler
        get_sampler(name)  # a bad name: one-line ValueError before any lookup
        opts = self.grid_defaults(name, steps or self.default_steps)
        if name == self.default_sampler:  # naming the default sampler == not naming it
            opts.update(self.sampler_options)
        opts.update(options)
        opts_g = dict(guidance_options or {})
        classifier = opts_g.get("classifier")
        if classifier is None:
            cond = self._cond(cond, n)
        else:  # the labels are the classifier's own, 0..K-1
            k = int(getattr(classifier, "num_classes", 0) or 0)
            cond = check_labels(cond, n, k or 2**62, "the classifier", device=self.device)
        field = self.guided_field(cond, guidance, **opts_g)
        out = sample_path(
            field,
            (n, *self.event_shape),
            sampler=name,
            steps=steps or self.default_steps,
            generator=generator,
            device=self.device,
            dtype=self.dtype,
            cond=cond,
            **opts,
        )
        passes = getattr(field, "network_passes", out.nfe)  # a guided field counts its passes
        self.sampling_nfe = passes
        self.sampling_nfe_text = format_nfe(out.nfe, passes)
        return out.x

    def log_prob(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Log-density of the model's probability-flow ODE (survey §2.5, Eq. 55), ``(batch,)``.

        The ODE ``dx/dt = v(x, t)`` of the learned field maps the data to the prior
        ``N(0, sigma(1)^2 I)``; the instantaneous change of variables gives the exact
        log-density of that continuous-time flow model (up to the solver's error; with
        Hutchinson's trace, for more than 16 dimensions by default, an unbiased estimate with
        a fixed seed unless ``generator`` is given). Integration runs from ``t_min`` (the
        smallest time the network is trained on; 0 for flow matching) to 1, in ``log t``
        when ``t_min > 0`` (same ODE, better conditioned near the data).
        """
        x = self.check_input(x)
        trace = self.likelihood_trace
        if trace == "auto":
            trace = "exact" if self.dim <= 16 else "hutchinson"
        opts: dict[str, Any] = {"trace": trace}
        if trace == "hutchinson":
            opts["generator"] = generator or torch.Generator(self.device).manual_seed(0)
        if self.likelihood_steps is not None:
            opts["steps"] = self.likelihood_steps
        cond = self._cond(cond, len(x))
        t0 = self.path.t_min if self.likelihood_t0 is None else self.likelihood_t0
        t1 = self.path.t_max
        if t0 > 0.0:
            # Integrate in u = log t: the same ODE, dx/du = t v(x, t), but well conditioned
            # near t = 0 where VP velocities grow like t^(-1/2).
            def velocity(y, u):
                t = torch.exp(u)
                return append_dims(t, y) * self.field.velocity(y, t, cond)

            span = {"t0": math.log(t0), "t1": math.log(t1)}
        else:

            def velocity(y, t):
                return self.field.velocity(y, t, cond)

            span = {"t0": t0, "t1": t1}
        res = ode_log_prob(velocity, x, self.path.prior_log_prob, **span, **opts)
        self.likelihood_nfe = res.nfe
        return res.log_prob

    def bits_per_dim(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``-log_prob(x) / (d ln 2)`` per sample, ``(batch,)`` (continuous data)."""
        return -self.log_prob(x, cond) / (self.dim * math.log(2.0))

    def score(self, x: torch.Tensor, t, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``grad log p_t(x)`` of the learned path, ``(batch, *event_shape)``."""
        x = self.check_input(x)
        return self.field.predict(x, t, as_=Prediction.SCORE, cond=self._cond(cond, len(x)))

    def velocity(self, x: torch.Tensor, t, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``dx/dt`` of the probability-flow ODE, ``(batch, *event_shape)``."""
        x = self.check_input(x)
        return self.field.predict(x, t, as_=Prediction.VELOCITY, cond=self._cond(cond, len(x)))

    def grid_defaults(self, sampler: str, steps: int) -> dict[str, Any]:
        """Time-grid options of a :meth:`sample` call with ``sampler`` and ``steps``.

        Once the model has seen data (:attr:`data_std` known), the deterministic log-SNR
        samplers (DPM-Solver, UniPC, DEIS, DDIM) get :func:`~probpath.sampling.samplers.
        default_grid`'s noise range scaled by the data (:func:`~probpath.sampling.samplers.
        range_rule_grid`; chosen on bench_samplers' tuning seeds, benchmarks/README.md). Its
        last noise level is ``O(sigma_data)`` at few steps, so coordinates much finer than the
        pooled std are blurred by ``sqrt(v / (v + sigma_min^2))``
        (``tests/sampling/test_registry.py::test_range_rule_final_step_blur``); pass
        ``grid="log_snr"`` to :meth:`sample` for the whole range. Every other sampler, and any
        sampler before fitting, uses its spacing over the path's whole range (``t_max`` to
        ``t_min``, then the explicit final step to ``sigma = 0``). Explicit ``options`` of
        :meth:`sample` override these.
        """
        spec = get_sampler(sampler)
        grid = range_rule_grid(self.path, steps, spec, self.data_std, self.dim)
        return {"grid": spec.spacing if grid is None else grid}

    def sample_t(self, n: int) -> torch.Tensor:
        """Training times ``(n,)``; default ``U[t_min, 1]`` (subclasses override)."""
        t0 = self.path.t_min
        return t0 + (1.0 - t0) * torch.rand(n, device=self.device, dtype=self.dtype)
