"""The main job: train every catalog model on the same data under the same budget, and compare.

``run_compare`` fits each selected model on one training split (the shared
:class:`~probpath.training.Trainer` for neural models, ``fit`` for estimators), draws samples,
and scores them against held-out data in one common space. It writes ``table.md``,
``table.csv``, ``table.json`` and ``samples.png`` and returns a :class:`CompareResult`.

How data reaches each model (:class:`DataSpace`):

* bounded data (a known ``value_range``, e.g. digits' 0..16 or 8-bit images) is mapped
  affinely to ``[-1, 1]``; unbounded data (the 2-D toys) is left as it is;
* ``data="vector"`` models get image data flattened to ``(N, C*H*W)`` and their samples are
  reshaped back;
* discrete data is dequantised with uniform noise (Trainer: fresh noise every batch;
  estimators: one seeded draw of the training set; evaluation: one seeded draw of the
  held-out set).

Every number in the table is computed in the data's original space, flattened: the NLL
adds the log-Jacobian of the affine map (``D log|scale|``), so it is the density of the
dequantised data in its own units; for discrete data it is reported in bits/dim with the
bin width of one quantisation level (an upper bound on the discrete NLL). MMD uses one
Gaussian kernel whose bandwidth is fixed from the held-out data, so the column compares
models on the same scale.

NFE per sample is what the model reports through the documented hook ``sampling_nfe``
(an ``int`` attribute or property giving network evaluations per sample of its default
sampler); one-step models (``capabilities.one_step``) report 1; otherwise the column says
"—" (unknown; never guessed).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from probpath.catalog import CATALOG, CatalogEntry, build_model, get_entry
from probpath.core.serialization import atomic_write_bytes
from probpath.data.dataset import Dataset
from probpath.metrics import median_bandwidth

__all__ = [
    "DataSpace",
    "TrainOutcome",
    "HeldOutNLL",
    "CompareRow",
    "CompareResult",
    "QUICK_TRAIN_BUDGET",
    "METRICS",
    "resolve_device",
    "select_entries",
    "train_model",
    "draw_samples",
    "sampling_nfe",
    "nll_of",
    "sample_metrics",
    "evaluate_model",
    "run_compare",
    "format_markdown",
    "samples_grid",
]

#: Seconds of training shared equally by the neural models in ``compare --quick``.
QUICK_TRAIN_BUDGET = 100.0
#: Whole-job target for ``--quick`` (start-up excluded); the per-model share shrinks to keep it.
_QUICK_DEADLINE = 160.0
#: Metric names understood by :func:`evaluate_model` (and ``probpath evaluate --metrics``).
METRICS = ("nll", "mmd", "swd", "energy", "fd")
_NLL_CHUNK = 256


# --------------------------------------------------------------------------------------------
# data space
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpace:
    """The map between a data set's original space and one model's input space.

    ``y = scale * x + shift`` elementwise, then flattened when ``flatten`` (vector models on
    image data). The inverse maps samples back; ``log_abs_det`` is ``log|dy/dx|`` per sample,
    so ``log p_x(x) = log p_y(y) + log_abs_det``.

    Attributes:
        event_shape: one sample's shape in the original space, e.g. ``(1, 8, 8)``.
        flatten: the model sees ``(N, prod(event_shape))``.
        scale / shift: the affine map to ``[-1, 1]`` (``1, 0`` for unbounded data).
        discrete: the data are quantised (dequantise before evaluating densities).
        n_levels / value_range: the quantisation grid in the original space.
    """

    event_shape: tuple[int, ...]
    flatten: bool = False
    scale: float = 1.0
    shift: float = 0.0
    discrete: bool = False
    n_levels: int | None = None
    value_range: tuple[float, float] | None = None

    @classmethod
    def for_entry(cls, dataset: Dataset, data_kind: str = "any") -> DataSpace:
        """The space a model with ``entry.data == data_kind`` sees for ``dataset``.

        Bounded data (``dataset.value_range`` known) is scaled to ``[-1, 1]``; vector models
        get image (multi-axis) data flattened.
        """
        scale, shift = 1.0, 0.0
        vr = dataset.value_range
        if vr is not None:
            low, high = float(vr[0]), float(vr[1])
            if not high > low:
                raise ValueError(f"dataset value_range must have low < high, got {vr}")
            scale = 2.0 / (high - low)
            shift = -1.0 - scale * low
        shape = tuple(dataset.event_shape)
        return cls(
            event_shape=shape,
            flatten=data_kind == "vector" and len(shape) > 1,
            scale=scale,
            shift=shift,
            discrete=bool(dataset.discrete),
            n_levels=dataset.n_levels,
            value_range=None if vr is None else (float(vr[0]), float(vr[1])),
        )

    @property
    def dim(self) -> int:
        """Scalars per sample."""
        return math.prod(self.event_shape)

    @property
    def model_event_shape(self) -> tuple[int, ...]:
        """One sample's shape in the model's space."""
        return (self.dim,) if self.flatten else self.event_shape

    @property
    def log_abs_det(self) -> float:
        """``log|dy/dx|`` of the map for one sample: ``D log|scale|``."""
        return self.dim * math.log(abs(self.scale))

    @property
    def bin_width(self) -> float | None:
        """Width of one quantisation level in the original space (discrete data only)."""
        if not self.discrete or self.value_range is None or not self.n_levels:
            return None
        if self.n_levels < 2:
            return 1.0
        return (self.value_range[1] - self.value_range[0]) / (self.n_levels - 1)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *event_shape)`` original data -> the model's input ``(N, *model_event_shape)``."""
        y = x * self.scale + self.shift if (self.scale, self.shift) != (1.0, 0.0) else x
        return y.reshape(len(y), -1) if self.flatten else y

    def to_data(self, y: torch.Tensor) -> torch.Tensor:
        """Model-space samples -> the original space, shape ``(N, *event_shape)``."""
        y = y.reshape(len(y), *self.event_shape)
        if (self.scale, self.shift) == (1.0, 0.0):
            return y
        return (y - self.shift) / self.scale

    def model_dataset(self, dataset: Dataset) -> Dataset:
        """``dataset`` mapped to the model's space (labels and quantisation metadata kept)."""
        vr = None
        if self.value_range is not None:
            lo, hi = (v * self.scale + self.shift for v in self.value_range)
            vr = (min(lo, hi), max(lo, hi))
        return replace(dataset, x=self.to_model(dataset.x), value_range=vr)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (stored as ``data.json`` in a ``probpath fit`` run)."""
        d = asdict(self)
        d["event_shape"] = list(self.event_shape)
        d["value_range"] = None if self.value_range is None else list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpace:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on a malformed record."""
        try:
            vr = d.get("value_range")
            return cls(
                event_shape=tuple(int(s) for s in d["event_shape"]),
                flatten=bool(d.get("flatten", False)),
                scale=float(d.get("scale", 1.0)),
                shift=float(d.get("shift", 0.0)),
                discrete=bool(d.get("discrete", False)),
                n_levels=None if d.get("n_levels") is None else int(d["n_levels"]),
                value_range=None if vr is None else (float(vr[0]), float(vr[1])),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"malformed data-space record ({exc!r})") from None


def _dequantize(x: torch.Tensor, space: DataSpace, seed: int) -> torch.Tensor:
    """One seeded uniform dequantisation of discrete data in its original space."""
    if not space.discrete or space.bin_width is None:
        return x
    from probpath.metrics import dequantize

    g = torch.Generator(device=x.device).manual_seed(seed)
    return dequantize(x, space.n_levels, space.value_range, generator=g)


# --------------------------------------------------------------------------------------------
# models: selection, training, sampling
# --------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; raises ``ValueError`` for unusable devices.

    The Trainer's rule (``training.distributed.resolve_device``: a bare ``cuda`` is this
    process's GPU under torchrun), plus a check that a given GPU index exists.
    """
    from probpath.training.distributed import resolve_device as trainer_device

    dev = trainer_device(str(device), int(os.environ.get("LOCAL_RANK", "0") or 0))
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA device(s))"
        )
    return dev


def _fits(entry: CatalogEntry, dataset: Dataset) -> str | None:
    """Why ``entry`` cannot run on ``dataset`` (``None`` if it can)."""
    space = DataSpace.for_entry(dataset, entry.data)
    if not entry.accepts(space.model_event_shape):
        return f"takes {entry.data} data, the data set has shape {dataset.event_shape}"
    if getattr(entry.cls, "capabilities", None) is None:
        return "declares no capabilities"
    if entry.cls.capabilities.conditional and (dataset.y is None or dataset.num_classes < 1):
        return "is conditional and the data set has no labels"
    return None


def select_entries(models: Sequence[str] | None, dataset: Dataset) -> list[CatalogEntry]:
    """The catalog entries to compare on ``dataset``.

    ``None`` selects every entry with ``in_compare=True`` that can take the data (others
    are skipped silently); explicit names must exist and fit the data (``ValueError``
    otherwise, naming the model and the reason).
    """
    if models is None:
        return [e for e in CATALOG if e.in_compare and _fits(e, dataset) is None]
    names = list(models)
    if not names:
        raise ValueError("no models given; pass names such as --models gaussian,gmm")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"model(s) {dupes} listed twice; list each model once")
    entries = [get_entry(n) for n in names]
    for e in entries:
        why = _fits(e, dataset)
        if why is not None:
            raise ValueError(f"model {e.name!r} {why}; leave it out of --models")
    return entries


@dataclass
class TrainOutcome:
    """What :func:`train_model` returns.

    Attributes:
        model: the model to evaluate (the EMA copy when it has forgotten its initialisation).
        seconds: wall time of training / fitting.
        steps: optimizer steps (``None`` for estimators).
        final_loss: last logged training loss, if any.
        used_ema: whether ``model`` is the EMA copy.
        run_dir: the Trainer's run directory (``None`` when nothing was written).
    """

    model: Any
    seconds: float
    steps: int | None = None
    final_loss: float | None = None
    used_ema: bool = False
    run_dir: Path | None = None


def train_model(
    model,
    train: Dataset,
    *,
    space: DataSpace,
    steps: int | None = None,
    time_budget: float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    lr: float | None = None,
    out_dir: str | Path | None = None,
    quick: bool = False,
    resume: str | Path | None = None,
) -> TrainOutcome:
    """Fit ``model`` on ``train`` (original space; mapped through ``space`` here).

    Estimators are fitted with ``fit`` on one seeded dequantised draw of the data (float64);
    neural models are trained by the shared Trainer (which dequantises every batch of
    discrete data afresh); ``resume`` continues a Trainer run from its last checkpoint.
    """
    device = resolve_device(device)
    caps = model.capabilities
    if caps.estimator:
        x = space.to_model(_dequantize(train.x.double(), space, seed)).to(device)
        t0 = time.perf_counter()
        model.fit(x)
        seconds = time.perf_counter() - t0
        if out_dir is not None:
            model.save(out_dir)
        return TrainOutcome(model, seconds, run_dir=None if out_dir is None else Path(out_dir))

    from probpath.training import TrainConfig, Trainer

    options: dict[str, Any] = {
        "steps": steps,
        "time_budget": time_budget,
        "seed": seed,
        "device": str(device),
        "out_dir": None if out_dir is None else str(out_dir),
        "progress": "off",
    }
    if batch_size is not None:
        options["batch_size"] = batch_size
    if lr is not None:
        options["lr"] = lr
    if quick:
        options.update(warmup_steps=10, ema_decay=0.99, log_every=10)
    config = TrainConfig(**_known_fields(TrainConfig, options))
    t0 = time.perf_counter()
    result = Trainer(config).fit(model, space.model_dataset(train), resume=resume)
    seconds = float(getattr(result, "seconds", None) or time.perf_counter() - t0)
    n_steps = int(result.steps)
    final_loss = None
    history = getattr(result, "history", None) or []
    for record in reversed(history):
        if isinstance(record, dict) and "loss" in record:
            final_loss = float(record["loss"])
            break
    trained, used_ema = result.model, False
    ema = getattr(result, "ema_model", None)
    decay = getattr(config, "ema_decay", None)
    # Without the EMA warm-up the copy still carries decay**steps of the random
    # initialisation: use it only once that weight is below 1 %.
    warm = getattr(config, "ema_warmup", False)
    if ema is not None and decay is not None and (warm or decay**n_steps < 0.01):
        trained, used_ema = ema, True
    trained.eval()
    return TrainOutcome(trained, seconds, n_steps, final_loss, used_ema, result.run_dir)


def _known_fields(cls, options: dict[str, Any]) -> dict[str, Any]:
    """Drop options a dataclass does not declare (the Trainer's config may be smaller)."""
    names = set(getattr(cls, "__dataclass_fields__", {}))
    return {k: v for k, v in options.items() if not names or k in names}


def sampling_nfe(model) -> int | None:
    """Network evaluations per sample of the model's default sampler, as the model reports.

    The documented hook is ``model.sampling_nfe`` (an ``int`` attribute or property; a
    zero-argument method also works). One-step models (``capabilities.one_step``) give 1.
    ``None`` means unknown — the table prints "—" rather than guess.
    """
    value = getattr(model, "sampling_nfe", None)
    if callable(value):
        value = value()
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return int(value)
    if getattr(model.capabilities, "one_step", False):
        return 1
    return None


def _model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    if isinstance(model, torch.nn.Module):
        for p in list(model.parameters()) + list(model.buffers()):
            if p.is_floating_point():
                return p.device, p.dtype
        return torch.device("cpu"), torch.float32
    for v in vars(model).values():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.device, v.dtype
    return torch.device("cpu"), torch.float64


def draw_samples(
    model,
    n: int,
    *,
    cond: torch.Tensor | None = None,
    seed: int = 0,
    **options: Any,
) -> tuple[torch.Tensor, float]:
    """``model.sample(n, ...)`` with a seeded generator on the model's device.

    Returns ``(samples, seconds)``; ``options`` (e.g. ``sampler``, ``steps``) are passed only
    when given.
    """
    device, _ = _model_device_dtype(model)
    g = torch.Generator(device=device).manual_seed(seed)
    kwargs = {k: v for k, v in options.items() if v is not None}
    if cond is not None:
        kwargs["cond"] = cond.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.sample(n, generator=g, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    out = getattr(out, "x", out)  # tolerate a typed output with the samples in ``.x``
    return out.detach(), seconds


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOutNLL:
    """Held-out negative log-likelihood per dimension.

    Attributes:
        value: the mean NLL per dimension (``None`` when the model has none).
        unit: "bits/dim" (discrete data, dequantised) or "nats/dim".
        kind: "exact", "bound" (an upper bound on the NLL from a lower bound on log p)
            or "none".
        note: why there is no value, e.g. "implicit model".
    """

    value: float | None
    unit: str
    kind: str
    note: str = ""

    def label(self) -> str:
        """The table cell, e.g. ``"1.234 (exact)"`` or ``"none — implicit model"``."""
        if self.value is None:
            return f"none — {self.note}" if self.note else "none"
        return f"{self.value:.3f} ({self.kind})"


def nll_of(
    model,
    x: torch.Tensor,
    space: DataSpace,
    *,
    cond: torch.Tensor | None = None,
) -> HeldOutNLL:
    """Mean held-out NLL per dimension of ``x`` (original space, already dequantised).

    ``log p_x(x) = log p_model(space.to_model(x)) + space.log_abs_det``; discrete data is
    reported in bits/dim with the bin width of one level (``metrics.bits_per_dim``).
    """
    unit = "bits/dim" if space.bin_width is not None else "nats/dim"
    kind = model.capabilities.likelihood_kind
    if kind == "none":
        route = model.capabilities.route
        note = "implicit model" if route == "adversarial" else "no likelihood"
        return HeldOutNLL(None, unit, kind, note)
    device, dtype = _model_device_dtype(model)
    y = space.to_model(x).to(device=device, dtype=dtype)
    parts = []
    try:
        with torch.no_grad():
            for i in range(0, len(y), _NLL_CHUNK):
                c = None if cond is None else cond[i : i + _NLL_CHUNK].to(device)
                chunk = y[i : i + _NLL_CHUNK]
                lp = model.log_prob(chunk) if c is None else model.log_prob(chunk, c)
                parts.append(lp.detach().double().cpu())
    except NotImplementedError as exc:
        return HeldOutNLL(None, unit, "none", str(exc).split("\n")[0][:80])
    log_p = torch.cat(parts) + space.log_abs_det
    if not torch.isfinite(log_p).all():
        return HeldOutNLL(None, unit, kind, "non-finite log-density")
    if space.bin_width is not None:
        from probpath.metrics import bits_per_dim

        value = bits_per_dim(log_p, space.dim, bin_width=space.bin_width)
    else:
        value = -log_p / space.dim
    value = float(torch.as_tensor(value, dtype=torch.float64).mean())
    return HeldOutNLL(value, unit, kind)


def sample_metrics(
    samples: torch.Tensor,
    reference: torch.Tensor,
    *,
    bandwidth: float,
    seed: int = 0,
    which: Sequence[str] = ("mmd", "swd", "energy"),
) -> dict[str, float]:
    """Two-sample distances between model samples and held-out data (both flattened).

    ``mmd``: unbiased MMD² with a Gaussian kernel of the given ``bandwidth``; ``swd``: sliced
    Wasserstein-2 (seeded projections, the same for every model); ``energy``: energy
    distance; ``fd``: Fréchet distance between Gaussian fits.
    """
    from probpath import metrics

    a = samples.reshape(len(samples), -1).double().cpu()
    b = reference.reshape(len(reference), -1).double().cpu()
    out: dict[str, float] = {}
    if not torch.isfinite(a).all():
        return {k: float("nan") for k in which}
    for name in which:
        if name == "mmd":
            v = metrics.mmd(a, b, bandwidth=bandwidth)
        elif name == "swd":
            v = metrics.sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(seed))
        elif name == "energy":
            v = metrics.energy_distance(a, b)
        elif name == "fd":
            v = metrics.frechet_distance(a, b)
        else:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        out[name] = float(v)
    return out


def evaluate_model(
    model,
    space: DataSpace,
    test: Dataset,
    *,
    metrics: Sequence[str] = METRICS,
    n: int | None = None,
    seed: int = 0,
    sample_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score a fitted model on held-out ``test`` data (original space).

    Returns a dict with the requested metrics (``nll`` as an :class:`HeldOutNLL` dict, the
    distances as floats), ``n`` and the MMD ``bandwidth``. Discrete data is dequantised once
    (seeded) and every score is computed against that draw.
    """
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {', '.join(METRICS)}")
    n = len(test) if n is None else min(int(n), len(test))
    x = _dequantize(test.x[:n].double(), space, seed)
    y = None if test.y is None else test.y[:n]
    conditional = model.capabilities.conditional
    result: dict[str, Any] = {"n": n}
    if "nll" in metrics:
        result["nll"] = asdict(nll_of(model, x, space, cond=y if conditional else None))
    distances = [m for m in metrics if m != "nll"]
    if distances:
        samples, _ = draw_samples(
            model, n, cond=y if conditional else None, seed=seed, **(sample_options or {})
        )
        samples = space.to_data(samples.double().cpu())
        bw = median_bandwidth(x)
        result["bandwidth"] = bw
        result.update(sample_metrics(samples, x, bandwidth=bw, seed=seed, which=distances))
    return result


# --------------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------------


@dataclass
class CompareRow:
    """One model's line of the table (``None`` = not measured; ``status`` explains failures)."""

    model: str
    route: str
    section: str
    nfe: int | None = None
    train_seconds: float | None = None
    train_steps: int | None = None
    sample_seconds_per_1k: float | None = None
    nll: float | None = None
    nll_unit: str = "nats/dim"
    nll_kind: str = "none"
    nll_note: str = ""
    mmd: float | None = None
    swd: float | None = None
    energy: float | None = None
    status: str = "ok"


@dataclass
class CompareResult:
    """Everything ``run_compare`` measured, plus where it wrote the files."""

    rows: list[CompareRow]
    dataset: str
    n_train: int
    n_test: int
    dim: int
    settings: dict[str, Any]
    notes: list[str]
    markdown: str = ""
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``table.json``)."""
        return {
            "dataset": self.dataset,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "dim": self.dim,
            "settings": self.settings,
            "notes": self.notes,
            "rows": [asdict(r) for r in self.rows],
        }


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "—"
    if not math.isfinite(v):
        return "nan"
    if v != 0 and (abs(v) < 10 ** -(digits - 1) or abs(v) >= 1e5):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}f}"


def _nll_cell(row: CompareRow) -> str:
    if row.nll is None:
        return f"none — {row.nll_note}" if row.nll_note else "none"
    return f"{row.nll:.3f} ({row.nll_kind})"


def format_markdown(result: CompareResult) -> str:
    """The Markdown table plus footnotes (what ``table.md`` holds and stdout shows)."""
    unit = result.settings.get("nll_unit", "nats/dim")
    head = (
        f"## probpath compare — {result.dataset} ({result.n_train} train / {result.n_test} "
        f"held out, {result.dim} dims)\n\n"
    )
    cols = [
        "model",
        "route (survey §)",
        "NFE / sample",
        "train s (steps)",
        "sample s / 1k",
        f"NLL {unit} ↓",
        "MMD² ↓ [a]",
        "SW₂ ↓ [b]",
        "energy ↓ [c]",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in result.rows:
        if r.status != "ok":
            cells = [r.model, f"{r.route} {r.section}", r.status] + [""] * (len(cols) - 3)
        else:
            steps = "fit" if r.train_steps is None else str(r.train_steps)
            cells = [
                r.model,
                f"{r.route} {r.section}",
                "—" if r.nfe is None else str(r.nfe),
                f"{_fmt(r.train_seconds, 3)} ({steps})",
                _fmt(r.sample_seconds_per_1k, 3),
                _nll_cell(r),
                _fmt(r.mmd),
                _fmt(r.swd),
                _fmt(r.energy),
            ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    notes = "\n".join(f"- {n}" for n in result.notes)
    return head + "\n".join(lines) + "\n\n" + notes + "\n"


def _csv_text(rows: list[CompareRow]) -> str:
    buf = io.StringIO()
    names = list(CompareRow.__dataclass_fields__)
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in asdict(r).items()})
    return buf.getvalue()


def _finite_or_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _load(dataset: Dataset | str, seed: int) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    from probpath.data import load_dataset

    return load_dataset(str(dataset), seed=seed)


def _say(message: str, verbose: bool) -> None:
    if verbose:
        print(message, file=sys.stderr, flush=True)


def run_compare(
    models: Sequence[str] | None,
    dataset: Dataset | str = "digits",
    *,
    steps: int | None = None,
    time_budget: float | None = None,
    quick: bool = False,
    out_dir: str | Path | None = "runs/compare",
    seed: int = 0,
    device: str = "auto",
    n_eval: int | None = None,
    n_nll: int | None = None,
    test_fraction: float = 0.2,
    verbose: bool = True,
    figure: bool = True,
) -> CompareResult:
    """Train every selected model on the same split under the same budget and compare them.

    Args:
        models: catalog names, or ``None`` for every ``in_compare`` model that fits the data.
        dataset: a :class:`Dataset`, or a name / path for :func:`probpath.data.load_dataset`.
        steps: optimizer steps per neural model (whichever of steps / time comes first).
        time_budget: training seconds per neural model.
        quick: use each entry's ``quick_kwargs``, share :data:`QUICK_TRAIN_BUDGET` seconds
            equally among the neural models (unless ``steps`` / ``time_budget`` are given)
            and evaluate on at most 256 held-out points.
        out_dir: where ``table.md``, ``table.csv``, ``table.json`` and ``samples.png`` go
            (created only once everything ran); ``None`` writes nothing.
        seed: seeds the split, the models, training, sampling and the metrics.
        device: "auto", "cpu" or "cuda[:i]".
        n_eval: held-out points scored and samples drawn per model (default 256 quick,
            else 1000; at most the test split).
        n_nll: held-out points whose NLL is computed, the first ``n_nll`` of the ``n_eval``
            (default 64 quick — ODE likelihoods are the costly part — else ``n_eval``).
        test_fraction: share of the data held out.
        verbose: print one progress line per model to stderr.
        figure: draw ``samples.png``.

    Returns:
        A :class:`CompareResult`; a model that fails is reported in its row's ``status``
        and the job goes on.

    Raises:
        ValueError: unknown model, a model that cannot take the data, bad budget or device
            (raised before anything is trained or written).
    """
    if steps is not None and (isinstance(steps, bool) or int(steps) < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if time_budget is not None and not float(time_budget) > 0:
        raise ValueError(f"time_budget must be positive seconds, got {time_budget!r}")
    if n_eval is not None and (isinstance(n_eval, bool) or int(n_eval) < 2):
        raise ValueError(f"n_eval must be an integer >= 2, got {n_eval!r}")
    if n_nll is not None and (isinstance(n_nll, bool) or int(n_nll) < 1):
        raise ValueError(f"n_nll must be a positive integer, got {n_nll!r}")
    dev = resolve_device(device)
    start = time.perf_counter()
    data = _load(dataset, seed)
    entries = select_entries(models, data)
    if not entries:
        raise ValueError(
            f"no catalog model can take data of shape {data.event_shape}; pass --models"
        )
    train, test = data.split(test_fraction, seed=seed)
    n_eval = min(int(n_eval or (256 if quick else 1000)), len(test))
    test = test.subset(torch.arange(n_eval))
    n_nll = min(int(n_nll or (64 if quick else n_eval)), n_eval)
    probe = DataSpace.for_entry(data)
    reference = _dequantize(test.x.double(), probe, seed + 1)
    bandwidth = median_bandwidth(reference)
    unit = "bits/dim" if probe.bin_width is not None else "nats/dim"
    neural = [e for e in entries if not e.cls.capabilities.estimator]
    fixed_budget = time_budget
    if quick and steps is None and time_budget is None:
        base = QUICK_TRAIN_BUDGET / max(1, len(neural))
    else:
        base = None

    rows: list[CompareRow] = []
    figure_samples: dict[str, torch.Tensor] = {}
    job = _Job(train, test, reference, bandwidth, dev, seed, steps, quick, n_nll, figure_samples)
    overheads: list[float] = []
    remaining_neural = len(neural)
    _say(
        f"compare: {len(entries)} models on {data.name} ({len(train)} train / {len(test)} "
        f"held out) on {dev}" + (f", {base:.1f} s of training each" if base else ""),
        verbose,
    )
    for i, entry in enumerate(entries, 1):
        caps = entry.cls.capabilities
        row = CompareRow(entry.name, caps.route, caps.section, nll_unit=unit)
        t_model = time.perf_counter()
        budget = fixed_budget
        if base is not None and not caps.estimator:
            # Equal shares; shrink them only if evaluation overheads threaten the deadline.
            left = _QUICK_DEADLINE - (time.perf_counter() - start)
            per_overhead = sum(overheads) / len(overheads) if overheads else 2.0
            avail = (left - per_overhead * (len(entries) - i + 1)) / max(1, remaining_neural)
            budget = max(0.5, min(base, avail))
        try:
            row = _compare_one(entry, row, job, budget)
        except Exception as exc:  # one broken model must not sink the whole comparison
            msg = " ".join(str(exc).split()) or type(exc).__name__
            row.status = f"failed: {type(exc).__name__}: {msg[:120]}"
        if not caps.estimator:
            remaining_neural -= 1
        elapsed = time.perf_counter() - t_model
        overheads.append(max(0.0, elapsed - (row.train_seconds or 0.0)))
        rows.append(row)
        _say(_progress_line(i, len(entries), row, elapsed), verbose)

    notes = _notes(probe, bandwidth, steps, time_budget, base, len(test), n_nll)
    result = CompareResult(
        rows=rows,
        dataset=data.name,
        n_train=len(train),
        n_test=len(test),
        dim=probe.dim,
        settings={
            "models": [e.name for e in entries],
            "steps": steps,
            "time_budget": time_budget,
            "quick_budget_per_model": base,
            "quick": quick,
            "seed": seed,
            "device": str(dev),
            "n_eval": n_eval,
            "n_nll": n_nll,
            "test_fraction": test_fraction,
            "mmd_bandwidth": bandwidth,
            "nll_unit": unit,
        },
        notes=notes,
    )
    result.markdown = format_markdown(result)
    if out_dir is not None:
        _write_outputs(result, Path(out_dir), figure_samples, test, figure)
    _say(f"compare: done in {time.perf_counter() - start:.1f} s", verbose)
    return result


@dataclass
class _Job:
    """What every model of one comparison shares."""

    train: Dataset
    test: Dataset
    reference: torch.Tensor  # held-out data, dequantised once, original space
    bandwidth: float
    device: torch.device
    seed: int
    steps: int | None
    quick: bool
    n_nll: int
    figure_samples: dict[str, torch.Tensor]


def _compare_one(
    entry: CatalogEntry, row: CompareRow, job: _Job, budget: float | None
) -> CompareRow:
    caps = entry.cls.capabilities
    space = DataSpace.for_entry(job.train, entry.data)
    torch.manual_seed(job.seed)
    model = build_model(
        entry,
        space.model_event_shape,
        job.train.num_classes if caps.conditional else None,
        quick=job.quick,
    )
    outcome = train_model(
        model,
        job.train,
        space=space,
        steps=job.steps,
        time_budget=budget,
        seed=job.seed,
        device=job.device,
        quick=job.quick,
    )
    model = outcome.model
    row.train_seconds = outcome.seconds
    row.train_steps = outcome.steps
    n = len(job.test)
    cond = job.test.y if caps.conditional else None
    samples, seconds = draw_samples(model, n, cond=cond, seed=job.seed + 2)
    row.sample_seconds_per_1k = seconds * 1000.0 / n
    row.nfe = sampling_nfe(model)
    samples = space.to_data(samples.double().cpu())
    job.figure_samples[entry.name] = samples[:64]
    k = job.n_nll
    nll = nll_of(model, job.reference[:k], space, cond=None if cond is None else cond[:k])
    row.nll, row.nll_unit, row.nll_kind, row.nll_note = nll.value, nll.unit, nll.kind, nll.note
    scores = sample_metrics(samples, job.reference, bandwidth=job.bandwidth, seed=job.seed)
    row.mmd, row.swd, row.energy = scores["mmd"], scores["swd"], scores["energy"]
    return row


def _progress_line(i: int, n: int, row: CompareRow, elapsed: float) -> str:
    if row.status != "ok":
        return f"[{i}/{n}] {row.model:<16} {row.status} ({elapsed:.1f} s)"
    steps = "fit" if row.train_steps is None else f"{row.train_steps} steps"
    return (
        f"[{i}/{n}] {row.model:<16} train {row.train_seconds:6.2f} s ({steps}), "
        f"NLL {_nll_cell(row)}, SW2 {_fmt(row.swd)}, total {elapsed:.1f} s"
    )


def _notes(
    space: DataSpace,
    bandwidth: float,
    steps: int | None,
    time_budget: float | None,
    base: float | None,
    n_test: int,
    n_nll: int,
) -> list[str]:
    notes = []
    if base is not None:
        notes.append(
            f"Budget: --quick, {QUICK_TRAIN_BUDGET:.0f} s of training shared equally by the "
            f"neural models (≤ {base:.1f} s each; less if evaluation ran late), each entry's "
            "quick configuration; estimators run `fit` to convergence."
        )
    else:
        parts = []
        if steps is not None:
            parts.append(f"{steps} steps")
        if time_budget is not None:
            parts.append(f"{time_budget:g} s")
        spec = " or ".join(parts) if parts else "the Trainer's default steps"
        notes.append(f"Budget: {spec} per neural model (whichever first); estimators run `fit`.")
    if space.value_range is not None:
        notes.append(
            f"Models see the data scaled from {list(space.value_range)} to [-1, 1] (vector "
            "models flattened); all scores are computed in the original space, flattened."
        )
    if space.discrete:
        notes.append(
            f"Discrete data ({space.n_levels} levels): uniform dequantisation; NLL in bits/dim "
            f"with bin width {space.bin_width:g} (an upper bound on the discrete NLL), "
            "including the log-Jacobian of the scaling. Distances use the same dequantised "
            f"held-out draw. NLL on the first {n_nll} held-out points."
        )
    else:
        notes.append(f"NLL in nats/dim on the first {n_nll} held-out points.")
    notes.append(
        "NLL kind: exact = exact log-density; bound = from a lower bound on log p (ELBO), "
        "so the true NLL is lower; none = the model defines no density."
    )
    notes.append(
        f"[a] unbiased MMD² with the Gaussian kernel exp(-|x-y|²/(2h²)), h = {bandwidth:.4g} "
        f"(median pairwise distance of the held-out data, fixed for all models); "
        f"{n_test} samples vs {n_test} held-out points."
    )
    notes.append(
        "[b] sliced Wasserstein-2 (random projections, seeded, the same for every model). "
        "[c] energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'|."
    )
    notes.append(
        "NFE / sample: network evaluations per sample as reported by the model "
        "(`sampling_nfe`), 1 for one-step models, — when the model does not report it."
    )
    return notes


def _write_outputs(
    result: CompareResult,
    out_dir: Path,
    figure_samples: dict[str, torch.Tensor],
    test: Dataset,
    figure: bool,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "table.md": result.markdown.encode(),
        "table.csv": _csv_text(result.rows).encode(),
        "table.json": (
            json.dumps(
                {
                    **result.to_dict(),
                    "rows": [_finite_or_none(asdict(r)) for r in result.rows],
                },
                indent=2,
                allow_nan=False,
            )
            + "\n"
        ).encode(),
    }
    for name, data in files.items():
        result.files[name] = atomic_write_bytes(out_dir / name, data)
    if figure and figure_samples:
        path = out_dir / "samples.png"
        result.files["samples.png"] = samples_grid(
            figure_samples, test.x[:64].double(), path, value_range=test.value_range
        )
    result.out_dir = out_dir


def samples_grid(
    models_samples: dict[str, torch.Tensor],
    data: torch.Tensor,
    path: str | Path,
    *,
    value_range: tuple[float, float] | None = None,
    panel_size: float = 2.6,
) -> Path:
    """The held-out data and each model's samples as a grid of panels, saved to ``path``.

    All panels share one view: the data's axis limits for 2-D data, the data's value range
    for images, the data's first two principal axes for other vectors.

    Args:
        models_samples: ``{name: (n, *event_shape) samples}`` in the data's space.
        data: ``(m, *event_shape)`` reference data.
        path: output image file (written atomically).
        value_range: pixel range of image data.
        panel_size: inches per panel.
    """
    from matplotlib.figure import Figure

    from probpath.plotting import plot_samples, save_figure

    shape = tuple(data.shape[1:])
    flat = data.reshape(len(data), -1).double()
    lim = projection = None
    if flat.shape[1] == 2 and len(shape) == 1:
        low, high = float(flat.min()), float(flat.max())
        pad = 0.1 * (high - low) + 1e-3
        lim = (low - pad, high + pad)
    elif flat.shape[1] > 2 and len(shape) != 3:
        mean = flat.mean(0)
        _, _, vt = torch.linalg.svd(flat - mean, full_matrices=False)
        projection = (mean.numpy(), vt[:2].T.numpy())
    panels = {"held-out data": data, **models_samples}
    ncols = min(len(panels), 6)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(panel_size * ncols, panel_size * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    for ax, (title, x) in zip(axes, panels.items()):
        plot_samples(ax, x, shape, title, lim=lim, value_range=value_range, projection=projection)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    return save_figure(fig, path)
