"""Fields: anything that predicts along a path, answering in any :class:`Prediction` kind.

A field is a function of ``(x_t, t)`` with a native prediction kind; samplers and the
likelihood only talk to fields, never to networks, so a trained network
(:class:`PathField`), a plain callable (:class:`FunctionField`) and the exact
Gaussian-mixture oracle (:mod:`probpath.paths.oracle`) are interchangeable.

Plugging in an external model: wrap any ``fn(x, t) -> Tensor`` (``x`` of shape
``(batch, *event)``, ``t`` of shape ``(batch,)`` in probpath's time, t = 0 data / t = 1 noise)
that predicts, say, the noise::

    field = FunctionField(lambda x, t: my_unet(x, 999 * t), AffinePath("ddpm"), "eps")
    x = sample_path(field, (16, 3, 32, 32), sampler="dpmpp_2m", steps=20).x

A model that runs time the other way (flow matching with tau = 1 data) is wrapped as
``lambda x, t: -my_velocity(x, 1 - t)`` with ``"velocity"``.

Every call of :meth:`Field.predict` or :meth:`Field.x0_eps` is one network evaluation (NFE);
:func:`count_nfe` wraps a field to count them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from probpath.core.broadcast import append_dims, expand_t
from probpath.paths.affine import AffinePath
from probpath.paths.parameterization import Prediction, convert, from_x0_eps, to_x0_eps
from probpath.paths.schedules import ScheduleValues

__all__ = ["Field", "PathField", "FunctionField", "CountingField", "ClippedField", "count_nfe"]


def _batch_t(t, x: torch.Tensor) -> torch.Tensor:
    """``t`` as ``(batch,)`` on ``x``'s dtype/device (no copy when it already is)."""
    if isinstance(t, torch.Tensor) and t.ndim == 1 and t.dtype == x.dtype:
        return t
    return expand_t(t, x)


class Field:
    """Base class. Subclasses implement :meth:`evaluate` (one NFE, native kind) or override
    :meth:`x0_eps` directly.

    Attributes:
        path: the :class:`~probpath.paths.affine.AffinePath` the field lives on.
        prediction: the native :class:`Prediction` kind.
    """

    def __init__(self, path: AffinePath, prediction: Prediction | str):
        if not isinstance(path, AffinePath):
            raise ValueError(f"path must be an AffinePath, got {type(path).__name__}")
        try:
            self.prediction = Prediction(prediction)
        except ValueError:
            kinds = ", ".join(repr(p.value) for p in Prediction)
            raise ValueError(f"prediction must be one of {kinds}; got {prediction!r}") from None
        self.path = path

    def evaluate(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """The native prediction at ``x`` ``(batch, *event)``, ``t`` ``(batch,)`` (one NFE)."""
        raise NotImplementedError(f"{type(self).__name__} must implement evaluate()")

    def x0_eps(
        self, x: torch.Tensor, t, cond=None, *, values: ScheduleValues | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0_hat, eps_hat)`` at ``(x, t)`` from one evaluation; ``t`` a float or ``(batch,)``.

        ``values`` (the path's values at ``t``) may be passed to skip recomputing them.
        """
        t = _batch_t(t, x)
        out = self.evaluate(x, t, cond)
        return to_x0_eps(out, self.prediction, x, t, self.path, values=values)

    def predict(
        self, x: torch.Tensor, t, as_: Prediction | str = Prediction.VELOCITY, cond=None
    ) -> torch.Tensor:
        """The field at ``(x, t)`` expressed as ``as_`` (default: the velocity ``dx/dt``)."""
        as_ = Prediction(as_)
        t = expand_t(t, x)
        if type(self).x0_eps is Field.x0_eps:
            return convert(self.evaluate(x, t, cond), self.prediction, as_, x, t, self.path)
        x0_hat, eps_hat = self.x0_eps(x, t, cond)
        return from_x0_eps(x0_hat, eps_hat, as_, x, t, self.path)

    def velocity(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        """``dx/dt`` of the probability-flow ODE (``predict(x, t, as_="velocity")``)."""
        return self.predict(x, t, Prediction.VELOCITY, cond)


class PathField(Field):
    """A network on a path with a native prediction kind (survey §2.4, §3.3).

    Args:
        network: ``network(x_in, c, cond) -> out`` with ``out`` shaped like ``x_in``; ``c`` is
            ``t`` ``(batch,)``, or EDM's ``c_noise = log(sigma_tilde) / 4`` when
            ``precondition=True``.
        path: the path.
        prediction: what ``network`` predicts.
        precondition: EDM preconditioning (Karras et al. 2022, Table 1) in the scaled variables
            ``x_tilde = x / alpha``, ``sigma_tilde = sigma / alpha``:
            ``x0_hat = c_skip x_tilde + c_out F(c_in x_tilde, c_noise)`` with
            ``c_skip = s_d^2 / (sigma_tilde^2 + s_d^2)``, ``c_out = sigma_tilde s_d /
            sqrt(sigma_tilde^2 + s_d^2)``, ``c_in = 1 / sqrt(sigma_tilde^2 + s_d^2)``. Requires
            ``prediction="x0"`` (the preconditioned network is a denoiser).
        sigma_data: ``s_d``, the data's standard deviation (EDM: 0.5).
    """

    def __init__(
        self,
        network: Callable,
        path: AffinePath,
        prediction: Prediction | str,
        precondition: bool = False,
        sigma_data: float = 0.5,
    ):
        super().__init__(path, prediction)
        if precondition and self.prediction is not Prediction.X0:
            raise ValueError(
                "precondition=True turns the network into a denoiser; pass prediction='x0'"
            )
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data!r}")
        self.network, self.precondition, self.sigma_data = network, precondition, sigma_data

    def preconditioning(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """EDM's ``c_skip, c_out, c_in, c_noise`` at ``t`` (each ``(batch,)``), in x-tilde units."""
        v = self.path(t)
        s = v.sigma / v.alpha
        sd2 = self.sigma_data**2
        n = torch.sqrt(s * s + sd2)
        return {
            "c_skip": sd2 / (s * s + sd2),
            "c_out": s * self.sigma_data / n,
            "c_in": 1.0 / n,
            "c_noise": 0.25 * torch.log(s),
            "alpha": v.alpha,
        }

    def evaluate(self, x, t, cond=None):
        t = expand_t(t, x)
        if not self.precondition:
            return self.network(x, t, cond)
        c = self.preconditioning(t)
        x_tilde = x / append_dims(c["alpha"], x)
        out = self.network(append_dims(c["c_in"], x) * x_tilde, c["c_noise"], cond)
        return append_dims(c["c_skip"], x) * x_tilde + append_dims(c["c_out"], x) * out


class FunctionField(Field):
    """Wrap a plain callable ``fn(x, t) -> out`` (or ``fn(x, t, cond)``) as a field.

    >>> f = FunctionField(lambda x, t: torch.zeros_like(x), AffinePath("linear"), "eps")
    >>> f.predict(torch.ones(2, 3), 0.5, as_="x0")[0].tolist()
    [2.0, 2.0, 2.0]
    """

    def __init__(self, fn: Callable, path: AffinePath, prediction: Prediction | str):
        super().__init__(path, prediction)
        if not callable(fn):
            raise ValueError(f"fn must be callable fn(x, t), got {type(fn).__name__}")
        self.fn = fn

    def evaluate(self, x, t, cond=None):
        t = _batch_t(t, x)
        return self.fn(x, t) if cond is None else self.fn(x, t, cond)


class CountingField(Field):
    """A field that counts the evaluations (NFE) of the field it wraps (attribute ``nfe``)."""

    def __init__(self, field: Field):
        super().__init__(field.path, field.prediction)
        self.field = field
        self.nfe = 0

    def evaluate(self, x, t, cond=None):
        self.nfe += 1
        return self.field.evaluate(x, t, cond)

    def x0_eps(self, x, t, cond=None, *, values=None):
        self.nfe += 1
        return self.field.x0_eps(x, t, cond, values=values)

    def predict(self, x, t, as_=Prediction.VELOCITY, cond=None):
        self.nfe += 1
        return self.field.predict(x, t, as_, cond)


class ClippedField(Field):
    """``field`` with its data prediction clamped to ``[low, high]`` (diffusers'
    ``clip_sample``): ``x0_hat <- clamp(x0_hat)`` and ``eps_hat`` recomputed from
    ``x_t = alpha_t x0_hat + sigma_t eps_hat`` so the pair stays on the path (where
    ``sigma_t = 0`` the field's own ``eps_hat`` is kept).

    Why: an eps-predicting network's error at high noise is amplified by deterministic
    samplers (``x0_hat = (x - sigma eps_hat) / alpha`` with ``alpha(1)`` near 0, and a
    Jacobian error that grows as a power of ``sigma / alpha`` along the flow, see
    ``tests/sampling/test_ddpm_ode_regression.py``); clamping to the known data range
    stops the drift. Opt-in through ``sample_path(..., clip_x0=(low, high))``: only the
    user knows the data range.
    """

    def __init__(self, field: Field, low: float, high: float):
        super().__init__(field.path, field.prediction)
        low, high = float(low), float(high)
        if not low < high:
            raise ValueError(f"clip_x0 must be (low, high) with low < high, got ({low}, {high})")
        self.field, self.low, self.high = field, low, high

    def evaluate(self, x, t, cond=None):
        return self.field.evaluate(x, t, cond)

    def x0_eps(self, x, t, cond=None, *, values=None):
        x0_hat, eps_hat = self.field.x0_eps(x, t, cond, values=values)
        clipped = x0_hat.clamp(self.low, self.high)
        if values is None:
            values = self.path(_batch_t(t, x))
        a, s = values.alpha, values.sigma
        if isinstance(s, float):
            return clipped, (eps_hat if s == 0.0 else (x - a * clipped) / s)
        a, s = append_dims(a, x), append_dims(s, x)
        safe = torch.where(s > 0, s, torch.ones_like(s))
        return clipped, torch.where(s > 0, (x - a * clipped) / safe, eps_hat)


def count_nfe(field: Field) -> CountingField:
    """Wrap ``field`` so that every evaluation increments ``.nfe`` (read it after sampling)."""
    if not isinstance(field, Field):
        raise ValueError(f"field must be a probpath Field, got {type(field).__name__}")
    return CountingField(field)
