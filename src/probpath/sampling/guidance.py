"""Guidance as field transforms: classifier-free, classifier, and any score correction.

Every transform here wraps a :class:`~probpath.paths.field.Field` into a new field, so every
sampler and every prediction kind gets guidance without knowing about it (survey §6):

* :class:`ClassifierFreeGuidance` (Ho & Salimans 2022):
  ``f_w(x, t, c) = (1 + w) f(x, t, c) - w f(x, t, null)`` in the field's native prediction.
  The hub's maps between kinds are affine in the prediction with coefficients that do not
  depend on it, and ``(1 + w) - w = 1``, so guiding in eps, x0, v or velocity space gives the
  same field; in score space it is ``(1 + w) grad log p_t(x | c) - w grad log p_t(x)``, the
  score of ``p_t(x | c)^(1 + w) p_t(x)^(-w)``. Conditional and unconditional passes run as
  one batch of ``2B``; :attr:`~ClassifierFreeGuidance.network_passes` counts both, and
  :func:`format_nfe` prints ``N`` guided steps as ``"N×2"`` (the survey's Table 3).
* :class:`ScoreShift`: ``score <- score + g(x, t)`` written back into ``(x0_hat, eps_hat)``
  by Tweedie's formula ``alpha x0_hat = x + sigma^2 score`` (so ``eps_hat <- eps_hat - sigma g``
  and ``x0_hat <- x0_hat + sigma^2 g / alpha``). :class:`ClassifierGuidance` (Dhariwal &
  Nichol 2021) is the shift ``g = s grad_x log p(c | x_t)``; the inverse-problem solvers of
  :mod:`probpath.inverse` are the shifts ``g = grad_x log p(y | x_t)`` of their papers.
* :class:`NoisyClassifier` / :func:`fit_classifier`: the noise-aware classifier
  ``p(c | x_t, t)`` that classifier guidance needs, trained on the path's ``x_t``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from probpath.core.broadcast import append_dims
from probpath.core.validation import check_positive_int, check_tensor
from probpath.paths.affine import AffinePath
from probpath.paths.field import Field, _batch_t
from probpath.paths.parameterization import from_x0_eps

__all__ = [
    "ClassifierFreeGuidance",
    "ScoreShift",
    "ClassifierGuidance",
    "NoisyClassifier",
    "fit_classifier",
    "save_classifier",
    "load_classifier",
    "CLASSIFIER_FILE",
    "format_nfe",
]

CLASSIFIER_FILE = "classifier.safetensors"
"""The weights of a saved :class:`NoisyClassifier`; its configuration is in ``classifier.json``."""


def format_nfe(steps: int, passes: int) -> str:
    """NFE as the survey prints it: ``"N×2"`` when each of ``steps`` evaluations was two
    network passes (guided sampling), else the number of passes.

    >>> format_nfe(20, 40), format_nfe(20, 20), format_nfe(20, 30)
    ('20×2', '20', '30')
    """
    return f"{steps}×2" if passes == 2 * steps and steps > 0 else str(passes)


def _coef(value, x: torch.Tensor):
    """A path value (float or ``(batch,)``) broadcastable against ``x``."""
    if isinstance(value, torch.Tensor):
        return append_dims(value.to(x.dtype), x)
    return float(value)


class ClassifierFreeGuidance(Field):
    """``(1 + w) f(x, t, c) - w f(x, t, null)`` in ``field``'s native prediction.

    Args:
        field: a class-conditional field (``cond`` = labels ``(batch,)``).
        weight: the guidance weight ``w`` (0: the conditional field; Ho & Salimans' ``w``).
        null_label: the "no label" index the network was trained with (label dropout).
        interval: ``(low, high)``: guide only where the noise level
            ``sigma_t / alpha_t`` lies in ``(low, high]`` (Kynkäänniemi et al. 2024, "Applying
            guidance in a limited interval"); elsewhere the conditional field alone (one pass).
        rescale: ``phi`` in ``[0, 1]`` of Lin et al. 2024 ("Common diffusion noise schedules
            and sample steps are flawed", Eq. 15-16): the guided output is rescaled to the
            per-sample standard deviation of the conditional output and mixed
            ``phi * rescaled + (1 - phi) * guided``. Not linear, so it depends on the native
            prediction (the paper uses v).

    Attributes:
        network_passes: network passes so far (2 per guided evaluation, 1 outside the
            interval); read it after sampling.
    """

    def __init__(
        self,
        field: Field,
        weight: float,
        null_label: int,
        *,
        interval: Sequence[float] | None = None,
        rescale: float = 0.0,
    ):
        if not isinstance(field, Field):
            raise ValueError(f"field must be a probpath Field, got {type(field).__name__}")
        super().__init__(field.path, field.prediction)
        weight = float(weight)
        if not weight == weight or weight in (float("inf"), float("-inf")):
            raise ValueError(f"guidance weight must be a finite number, got {weight}")
        if interval is not None:
            interval = tuple(float(v) for v in interval)
            if len(interval) != 2 or not 0.0 <= interval[0] < interval[1]:
                raise ValueError(
                    f"interval must be (low, high) with 0 <= low < high (noise levels "
                    f"sigma/alpha), got {interval!r}"
                )
        if not 0.0 <= float(rescale) <= 1.0:
            raise ValueError(f"rescale must be in [0, 1], got {rescale!r}")
        self.field, self.weight, self.null_label = field, weight, int(null_label)
        self.interval, self.rescale = interval, float(rescale)
        self.network_passes = 0

    def _active(self, t: torch.Tensor) -> torch.Tensor:
        """``(batch,)`` bool: where guidance applies."""
        if self.interval is None:
            return torch.ones(t.shape, dtype=torch.bool, device=t.device)
        v = self.path(t)
        level = v.sigma / v.alpha.clamp_min(torch.finfo(t.dtype).tiny)
        return (level > self.interval[0]) & (level <= self.interval[1])

    def evaluate(self, x, t, cond=None):
        if cond is None:
            raise ValueError("classifier-free guidance needs labels: pass cond=(batch,) labels")
        t = _batch_t(t, x)
        active = self._active(t)
        if not bool(active.any()):
            self.network_passes += 1
            return self.field.evaluate(x, t, cond)
        null = torch.full_like(cond, self.null_label)
        out = self.field.evaluate(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null]))
        self.network_passes += 2
        f_c, f_u = out.chunk(2)
        guided = f_c + self.weight * (f_c - f_u)
        if self.rescale > 0.0:
            dims = tuple(range(1, x.ndim))
            ratio = f_c.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
            guided = self.rescale * guided * ratio + (1.0 - self.rescale) * guided
        if not bool(active.all()):
            guided = torch.where(append_dims(active, x), guided, f_c)
        return guided


class ScoreShift(Field):
    """``field`` with its score shifted by ``g(x, t, cond)``: the base of every guidance
    that adds a log-likelihood gradient (classifier guidance, DPS, ΠGDM).

    Subclasses implement :meth:`shift` ``(x, t, cond, x0_hat) -> g`` shaped like ``x``; ``x``
    requires grad and ``x0_hat`` is the field's differentiable data prediction at ``x``, so
    ``torch.autograd.grad`` through either works. The shift is written back by Tweedie
    (``eps_hat - sigma g``, ``x0_hat + sigma^2 g / alpha``; where ``alpha = 0`` the data
    prediction is kept).
    """

    def __init__(self, field: Field):
        if not isinstance(field, Field):
            raise ValueError(f"field must be a probpath Field, got {type(field).__name__}")
        super().__init__(field.path, field.prediction)
        self.field = field

    def shift(self, x, t, cond, x0_hat) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement shift()")

    def field_cond(self, cond):
        """The ``cond`` passed to the wrapped field (default: the same)."""
        return cond

    def x0_eps(self, x, t, cond=None, *, values=None):
        t = _batch_t(t, x)
        if values is None:
            values = self.path(t)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0_hat, eps_hat = self.field.x0_eps(x_in, t, self.field_cond(cond), values=values)
            g = self.shift(x_in, t, cond, x0_hat)
        x0_hat, eps_hat, g = x0_hat.detach(), eps_hat.detach(), g.detach()
        alpha, sigma = _coef(values.alpha, x), _coef(values.sigma, x)
        if isinstance(alpha, float):
            x0_shift = sigma * sigma * g / alpha if alpha > 0 else 0.0 * g
        else:
            safe = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
            x0_shift = torch.where(alpha > 0, sigma * sigma * g / safe, torch.zeros_like(g))
        return x0_hat + x0_shift, eps_hat - sigma * g

    def evaluate(self, x, t, cond=None):
        x0_hat, eps_hat = self.x0_eps(x, t, cond)
        return from_x0_eps(x0_hat, eps_hat, self.prediction, x, _batch_t(t, x), self.path)


class ClassifierGuidance(ScoreShift):
    """Classifier guidance (Dhariwal & Nichol 2021, Alg. 1-2):
    ``score(x_t | c) = score(x_t) + s grad_x log p(c | x_t)``.

    Args:
        field: the (unconditional) field; it is called with ``cond=None``.
        classifier: ``classifier(x_t, t) -> logits (batch, K)``, noise-aware
            (:class:`NoisyClassifier`, or the oracle's exact
            :meth:`~probpath.paths.oracle.ClassConditionalOracle.class_log_posterior`).
        scale: ``s`` (1: Bayes' rule exactly, larger: sharper classes).

    Labels ``cond`` ``(batch,)`` are the classes to guide towards.
    """

    def __init__(self, field: Field, classifier: Callable, scale: float = 1.0):
        super().__init__(field)
        if not callable(classifier):
            raise ValueError("classifier must be callable classifier(x_t, t) -> logits")
        self.classifier, self.scale = classifier, float(scale)

    def x0_eps(self, x, t, cond=None, *, values=None):
        if cond is None:
            raise ValueError("classifier guidance needs labels: pass cond=(batch,) labels")
        return super().x0_eps(x, t, cond, values=values)

    def shift(self, x, t, cond, x0_hat):
        logits = self.classifier(x, t)
        log_p = torch.log_softmax(logits, dim=-1).gather(1, cond.long()[:, None]).sum()
        return self.scale * torch.autograd.grad(log_p, x)[0]

    def field_cond(self, cond):
        return None  # the guided field is unconditional; the labels go to the classifier


class NoisyClassifier(nn.Module):
    """A noise-aware classifier ``(x_t, t) -> logits (batch, K)`` for classifier guidance: an
    MLP on ``[flatten(x_t), emb(t)]``.

    >>> net = NoisyClassifier(2, 3, hidden=(8,))
    >>> net(torch.zeros(4, 2), torch.rand(4)).shape
    torch.Size([4, 3])
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        hidden: Sequence[int] = (128, 128),
        embed_dim: int = 32,
        act: str = "silu",
    ):
        super().__init__()
        from probpath.nn import MLP, time_embedding

        self.dim = check_positive_int(dim, "dim")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.config = {
            "dim": self.dim,
            "num_classes": self.num_classes,
            "hidden": [check_positive_int(h, "hidden") for h in hidden],
            "embed_dim": check_positive_int(embed_dim, "embed_dim"),
            "act": str(act),
        }
        self.time_embed = time_embedding("sinusoidal", embed_dim)
        self.net = MLP(dim + embed_dim, num_classes, tuple(hidden), act=act)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        return self.net(torch.cat([flat, self.time_embed(t).to(flat.dtype)], dim=-1))


def fit_classifier(
    path: AffinePath,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int | None = None,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 2e-3,
    hidden: Sequence[int] = (128, 128),
    t_min: float | None = None,
    generator: torch.Generator | None = None,
) -> NoisyClassifier:
    """Train a :class:`NoisyClassifier` by cross-entropy on ``x_t`` of ``path``,
    ``t ~ U[t_min, 1]`` (Dhariwal & Nichol 2021, §4: the classifier sees the noisy inputs).

    Args:
        path: the path of the model to be guided.
        x: data ``(N, *event)``; y: labels ``(N,)`` in ``0..K-1``.
        num_classes: ``K`` (default: ``max(y) + 1``).
        steps, batch_size, lr, hidden: the training budget and network width.
        t_min: smallest training time (default: the path's ``t_min``).
        generator: seeds the initialisation, batches, times and noise.

    Returns:
        The trained classifier in eval mode (float32, on ``x``'s device).
    """
    x = check_tensor(x, "x").float()
    y = torch.as_tensor(y, device=x.device)
    if y.shape != (len(x),) or y.is_floating_point():
        raise ValueError(f"y must be integer labels of shape ({len(x)},), got {tuple(y.shape)}")
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise ValueError(f"labels must lie in 0..{k - 1}; got {int(y.min())}..{int(y.max())}")
    gen = generator or torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        net = NoisyClassifier(x[0].numel(), k, hidden).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    t0 = path.t_min if t_min is None else float(t_min)
    for _ in range(check_positive_int(steps, "steps")):
        idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=gen).to(x.device)
        t = t0 + (1.0 - t0) * torch.rand(len(idx), generator=gen).to(x)
        eps = torch.randn(x[idx].shape, generator=gen).to(x)
        x_t = path.sample(x[idx], t, eps=eps).x_t
        loss = F.cross_entropy(net(x_t, t), y[idx].long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def save_classifier(net: NoisyClassifier, directory, extra: dict | None = None) -> Path:
    """Write ``net`` to ``directory``: :data:`CLASSIFIER_FILE` (safetensors) and
    ``classifier.json`` (its configuration plus ``extra``, e.g. the run it guides).

    Returns:
        The directory.
    """
    from probpath.core.serialization import atomic_write_json, save_tensors

    if not isinstance(net, NoisyClassifier):
        raise TypeError(f"net must be a NoisyClassifier, got {type(net).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_tensors(directory / CLASSIFIER_FILE, tensors)
    atomic_write_json(directory / "classifier.json", {**(extra or {}), "config": net.config})
    return directory


def load_classifier(directory, device: str | torch.device = "cpu") -> NoisyClassifier:
    """The :class:`NoisyClassifier` that :func:`save_classifier` wrote to ``directory``
    (the weights' names and shapes are checked against ``classifier.json`` before reading).

    Raises:
        CheckpointError: a missing or malformed file (the message names it).
    """
    from probpath.core.serialization import CheckpointError, TensorInfo, load_tensors, read_json

    directory = Path(directory)
    meta_path = directory / "classifier.json"
    if not meta_path.is_file() or not (directory / CLASSIFIER_FILE).is_file():
        raise CheckpointError(
            f"{directory} is not a classifier run (no classifier.json / {CLASSIFIER_FILE}); "
            "write one with `probpath fit classifier --run RUN --out DIR`"
        )
    config = read_json(meta_path).get("config")
    try:
        net = NoisyClassifier(**config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{meta_path}: bad classifier configuration ({exc})") from None
    expected = {k: TensorInfo.of(v) for k, v in net.state_dict().items()}
    net.load_state_dict(load_tensors(directory / CLASSIFIER_FILE, "cpu", expected))
    return net.to(device).eval()
