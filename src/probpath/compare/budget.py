"""Sampling and scoring inside a time budget: path models whose default sampler (e.g. DDPM's
1000-step ancestral chain) would take far longer than their training get a few-step sampler,
and any model whose likelihood (an ODE solve, an importance-weighted bound) would, fewer NLL
points that fit — measured, never guessed; the table says which.

The cost of one network evaluation (NFE) on the batch to be sampled is timed on the model
itself; the default sampler's NFE is counted on one-sample draws of 1 and 2 steps (the NFE
grows by the same count per step); the likelihood's cost per point is timed on two points.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from probpath.compare.fitting import model_device_dtype
from probpath.compare.runmodel import default_sample_options, is_path_model
from probpath.compare.space import DataSpace

__all__ = ["FALLBACK_SAMPLER", "QUICK_TRAIN_BUDGET", "SamplingPlan", "plan_sampling"]

#: Seconds of training shared equally by the neural models in ``compare --quick``.
QUICK_TRAIN_BUDGET = 100.0

#: The few-step sampler used when the default does not fit (one NFE per step, second order).
FALLBACK_SAMPLER = "dpmpp_2m"
#: Floors that bound the overshoot when nothing fits: one NFE of the ``n`` samples, and the
#: NLL of the two points whose cost was just timed (a floor above them would let the phase
#: run many times its budget on a loaded machine: 4 steps took 7 min for a 30 s budget).
_MIN_STEPS, _MAX_STEPS, _MIN_NLL = 1, 50, 2
#: Fixed RK4 steps of the likelihood ODE under a budget (the catalog's quick setting).
_LIKELIHOOD_STEPS = 8


@dataclass(frozen=True)
class SamplingPlan:
    """How a model is sampled and scored in a comparison.

    Attributes:
        options: keyword options for ``model.sample`` (empty: the model's default).
        n_nll: held-out points whose NLL is computed.
        label: the table's "sampler" cell, e.g. ``"dpmpp_2m, 12 steps (budget)"``.
    """

    options: dict[str, Any]
    n_nll: int
    label: str


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    with torch.no_grad():
        fn()
    return time.perf_counter() - t0


def _default_nfe(model, generator: torch.Generator) -> int:
    """NFE of the model's default sampler, counted on one-sample draws with 1 and 2 steps
    (cheap even for a 1000-step chain): ``nfe(k) = first + (k - 1) * per_step``."""
    counts = []
    for k in (1, 2):
        with torch.no_grad():
            model.sample(1, generator=generator, steps=k)
        counts.append(int(model.sampling_nfe))
    per_step = counts[1] - counts[0]
    return counts[0] + (model.default_steps - 1) * per_step


def plan_sampling(
    model, space: DataSpace, n: int, n_nll: int, budget: float | None, *, seed: int = 0
) -> SamplingPlan:
    """The sampler and NLL size for ``model`` so that drawing ``n`` samples and scoring
    ``n_nll`` points each take at most about ``budget`` seconds (``None``: no limit).

    Path models get a sampler plan (other models sample in one pass); their default is kept
    when it fits. Every unconditional model with a density gets an NLL plan: its cost per
    point is timed on two points and ``n_nll`` shrinks to what fits (an IWAE bound or an ODE
    likelihood can cost far more than sampling). Under a budget, a model whose likelihood ODE
    is solved adaptively (no bound on its cost) is switched to fixed RK4 steps
    (``model.likelihood_steps``, said in the label).
    """
    path = is_path_model(model)
    label = f"{model.default_sampler}, {model.default_steps} steps" if path else ""
    # the run's view (RunModel, the CLI): on bounded data path models clamp x0_hat to the range
    clip = default_sample_options(model, space)
    if budget is None:
        return SamplingPlan(clip, n_nll, label)
    device, dtype = model_device_dtype(model)
    g = torch.Generator(device=device).manual_seed(seed)
    options: dict[str, Any] = {}
    if path:
        options, label = _plan_sampler(model, n, budget, g, device, dtype)
    n_nll, label = _plan_nll(model, space, n_nll, budget, label, g, device, dtype)
    return SamplingPlan({**clip, **options}, n_nll, label)


def _plan_sampler(model, n, budget, g, device, dtype) -> tuple[dict[str, Any], str]:
    """A path model's sampler: its default if ``default NFE x seconds per NFE`` fits, else
    :data:`FALLBACK_SAMPLER` with as many steps as fit (at least one)."""
    label = f"{model.default_sampler}, {model.default_steps} steps"
    b = min(n, 256)
    x = torch.randn(b, *model.event_shape, generator=g, device=device, dtype=dtype)
    t = torch.full((b,), 0.5, device=device, dtype=dtype)
    per_nfe = min(_seconds(lambda: model.field.evaluate(x, t, None)) for _ in range(2)) * n / b
    default_nfe = _default_nfe(model, g)
    if default_nfe * per_nfe <= budget:
        return {}, label
    steps = int(min(_MAX_STEPS, max(_MIN_STEPS, budget // max(per_nfe, 1e-9))))
    options: dict[str, Any] = {"sampler": FALLBACK_SAMPLER, "steps": steps}
    return options, f"{FALLBACK_SAMPLER}, {steps} steps (default {default_nfe} NFE > budget)"


def _plan_nll(model, space, n_nll, budget, label, g, device, dtype) -> tuple[int, str]:
    """How many held-out points get an NLL within ``budget`` (at least the two timed)."""
    caps = model.capabilities
    if n_nll <= _MIN_NLL or caps.likelihood_kind == "none" or caps.conditional:
        return n_nll, label
    y = space.to_model(torch.zeros(2, *space.event_shape, dtype=torch.float64))
    y = y.to(device=device, dtype=dtype) + 0.01 * torch.randn(
        y.shape, generator=g, device=device, dtype=dtype
    )
    adaptive = is_path_model(model) and model.likelihood_steps is None
    if adaptive:  # an adaptive solve has no cost bound: probe and use fixed RK4 steps
        model.likelihood_steps = 1
    per_point = _seconds(lambda: model.log_prob(y)) / 2
    if adaptive:
        per_point *= _LIKELIHOOD_STEPS
        model.likelihood_steps = _LIKELIHOOD_STEPS
        label = _join(label, f"NLL with {_LIKELIHOOD_STEPS} RK4 steps (budget)")
    fits = max(_MIN_NLL, math.floor(budget / max(per_point, 1e-9)))
    if fits < n_nll:
        n_nll = fits
        label = _join(label, f"NLL on {n_nll} points (budget)")
    return n_nll, label


def _join(label: str, part: str) -> str:
    return f"{label}; {part}" if label else part
