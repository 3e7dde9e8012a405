"""Running the rows of the survey tables on top of :mod:`probpath.compare`.

Each data set is split once (split seed 0, the same for every training seed) and its feature
classifier is trained once on that training split (seed 0): every row and every seed is
scored in the same feature space against the same held-out draw, so the spread over seeds is
the models' and not the metric's. Training, sampling and bits/dim are compare's public
functions (``train_model``, ``draw_samples``, ``sample_metrics``, ``nll_of``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from probpath.catalog import build_model, get_entry, model_names
from probpath.compare import (
    DataSpace,
    draw_samples,
    nll_of,
    sample_metrics,
    sampling_nfe_text,
    train_model,
)
from probpath.compare.runmodel import default_sample_options
from probpath.compare.space import dequantize_held_out
from probpath.data.dataset import Dataset
from probpath.survey.disentanglement import score_factor_vae, train_factor_vae
from probpath.survey.specs import Budget, RowSpec, TableSpec

__all__ = [
    "SPLIT_SEED",
    "PENDING",
    "SurveyData",
    "prepare_data",
    "needs_data",
    "needs_features",
    "run_table",
]

#: Seed of every data set's train / held-out split and of its feature classifier.
SPLIT_SEED = 0
#: Status of a row whose catalog entry is not in this build.
PENDING = "pending: entry not in this build"


@dataclass
class SurveyData:
    """One data set as every row of a table sees it.

    Attributes:
        name: data set name.
        train, test: the fixed split (``test`` cut to the budget's ``n_eval`` points).
        reference: the held-out points dequantised once (seeded), original space.
        extractor: the feature classifier (:func:`probpath.metrics.extractor_for`: the
            shipped one for digits).
    """

    name: str
    train: Dataset
    test: Dataset
    reference: torch.Tensor
    extractor: Any


def prepare_data(name: str, n_eval: int, *, features: bool = True) -> SurveyData:
    """Load ``name``, split it with :data:`SPLIT_SEED`, get the feature classifier (only
    with ``features``: tables without sample rows do not need it)."""
    from probpath.data import load_dataset
    from probpath.metrics import extractor_for

    data = load_dataset(name, seed=SPLIT_SEED)
    train, test = data.split(0.2, seed=SPLIT_SEED)
    test = test.subset(torch.arange(min(n_eval, len(test))))
    probe = DataSpace.for_entry(data)
    reference = dequantize_held_out(test.x.double(), probe, SPLIT_SEED + 1)
    # the protocol's feature space: the shipped classifier for digits, else one fitted with a
    # fixed seed on this fixed split (metrics.extractor_for)
    extractor = extractor_for(train, seed=SPLIT_SEED) if features else None
    return SurveyData(name, train, test, reference, extractor)


def _sample_scores(
    samples: torch.Tensor, data: SurveyData, labels: torch.Tensor | None
) -> dict[str, float]:
    """FD features, precision / recall in the classifier's features, and (with ``labels``)
    the share of samples the classifier assigns to the label they were drawn for."""
    from probpath.metrics import feature_precision_recall, median_bandwidth

    out = sample_metrics(
        samples,
        data.reference,
        bandwidth=median_bandwidth(data.reference),
        which=("fd_features",),
        extractor=data.extractor,
    )
    if not math.isfinite(out["fd_features"]):
        return out
    pr = feature_precision_recall(data.reference, samples, data.extractor)
    out.update(precision=pr.precision, recall=pr.recall)
    if labels is not None:
        with torch.no_grad():
            pred = data.extractor(samples.reshape(len(samples), -1).float()).argmax(1)
        out["class_accuracy"] = 100.0 * float((pred == labels).double().mean())
    return out


def noise_floor(data: SurveyData, conditional: bool) -> dict[str, Any]:
    """The scores of a second draw of the data (training points, as many as held out): what
    a perfect model scores at this sample size (optimistic for FD: the classifier was trained
    on those points)."""
    n = len(data.test)
    probe = DataSpace.for_entry(data.train)
    draw = dequantize_held_out(data.train.x[:n].double(), probe, SPLIT_SEED + 3)
    return _sample_scores(draw, data, data.train.y[:n] if conditional else None)


def _n_params(model) -> float | None:
    if not isinstance(model, torch.nn.Module):
        return None
    return sum(p.numel() for p in model.parameters()) / 1e3


class _Runner:
    """The rows of one table for one seed; trained models are kept for the solver rows."""

    def __init__(self, spec: TableSpec, data: SurveyData | None, budget: Budget, seed: int, dev):
        self.spec, self.data, self.budget, self.seed, self.device = spec, data, budget, seed, dev
        self.trained: dict[str, tuple[Any, DataSpace]] = {}

    def fit(self, row: RowSpec) -> tuple[Any, DataSpace, dict[str, Any]]:
        entry = get_entry(row.entry)
        space = DataSpace.for_entry(self.data.train, row.data or entry.data)
        caps = entry.cls.capabilities
        labels = row.conditional or caps.conditional
        torch.manual_seed(self.seed)
        model = build_model(
            entry,
            space.model_event_shape,
            self.data.train.num_classes if labels else None,
            quick=True,
            **row.options,
        )
        outcome = train_model(
            model,
            self.data.train,
            space=space,
            time_budget=self.budget.train_seconds,
            seed=self.seed,
            device=self.device,
            quick=True,
        )
        self.trained[row.label] = (outcome.model, space)
        info = {"train_seconds": outcome.seconds, "train_steps": outcome.steps}
        return outcome.model, space, info

    def sample_row(self, model, space: DataSpace, row: RowSpec) -> dict[str, Any]:
        caps = model.capabilities
        n = len(self.data.test)
        labels = self.data.test.y if (row.conditional or caps.conditional) else None
        options = dict(default_sample_options(model, space))
        for key in ("sampler", "steps", "guidance"):
            if getattr(row, key) is not None:
                options[key] = getattr(row, key)
        samples, seconds = draw_samples(model, n, cond=labels, seed=self.seed + 2, **options)
        samples = space.to_data(samples.double().cpu())
        nfe = sampling_nfe_text(model)
        values: dict[str, Any] = {
            "nfe": None if nfe is None else str(nfe),
            "params": _n_params(model),
            "sample_seconds_per_1k": seconds * 1000.0 / n,
        }
        values.update(
            _sample_scores(samples, self.data, labels if row.guidance or row.conditional else None)
        )
        sampler = options.get("sampler") or getattr(model, "default_sampler", None)
        values["sampler"] = None if sampler is None else str(sampler)
        return values

    def run(self, row: RowSpec) -> dict[str, Any]:
        if row.kind == "factor_cls":
            beta = float(get_entry(row.entry).kwargs.get("beta", 1.0))
            fit = train_factor_vae(
                beta, self.seed, steps=None, time_budget=self.budget.factor_seconds,
                n_images=self.budget.factor_images,
            )  # fmt: skip
            votes = self.budget.factor_votes
            res = score_factor_vae(fit.model, self.seed, n_train=votes, n_test=votes)
            return {
                "factor_cls": 100.0 * res.accuracy,
                "factor_cls_se": 100.0 * res.std_error,
                "train_seconds": fit.seconds,
                "train_steps": fit.steps,
            }
        if row.kind == "solver":
            if row.base not in self.trained:
                raise RuntimeError(f"base row {row.base!r} was not trained (did it fail?)")
            model, space = self.trained[row.base]
            return self.sample_row(model, space, row)
        model, space, info = self.fit(row)
        if row.kind == "bpd":
            k = self.budget.n_nll
            nll = nll_of(model, self.data.reference[:k], space)
            return {**info, "bits_per_dim": nll.value, "nll_kind": nll.kind, "n_nll": k}
        return {**info, **self.sample_row(model, space, row)}


def needs_data(spec: TableSpec) -> bool:
    """Whether a row of ``spec`` trains or scores on the table's data set."""
    return any(r.kind != "factor_cls" for r in spec.rows)


def needs_features(spec: TableSpec) -> bool:
    """Whether a row of ``spec`` is scored in the feature classifier's space."""
    return any(r.kind in ("sample", "solver") for r in spec.rows)


def run_table(
    spec: TableSpec,
    budget: Budget,
    seeds: tuple[int, ...],
    device: torch.device,
    *,
    data: SurveyData | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every row of ``spec`` for every seed.

    Returns ``{"records": [...], "floor": {...} | None}``; each record is ``{"row", "entry",
    "seed", "status", "seconds", "values"}``. A row that fails keeps its error in
    ``status`` and the table goes on; a row whose entry is not in the catalog is
    :data:`PENDING` (listed once, never run).
    """
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    known = set(model_names())
    if data is None and needs_data(spec):
        data = prepare_data(spec.dataset, budget.n_eval, features=needs_features(spec))
    records: list[dict[str, Any]] = []
    for row in spec.rows:
        if row.entry not in known:
            records.append({"row": row.label, "entry": row.entry, "seed": None,
                            "status": PENDING, "seconds": 0.0, "values": {}})  # fmt: skip
    for seed in seeds:  # seeds outermost: a budget cut still leaves whole seeds
        runner = _Runner(spec, data, budget, seed, device)
        for row in spec.rows:
            if row.entry not in known:
                continue
            t0 = time.perf_counter()
            record = {"row": row.label, "entry": row.entry, "seed": seed, "status": "ok"}
            try:
                record["values"] = runner.run(row)
            except Exception as exc:  # one broken row must not sink the table
                msg = " ".join(str(exc).split()) or type(exc).__name__
                record["status"] = f"failed: {type(exc).__name__}: {msg[:160]}"
                record["values"] = {}
            record["seconds"] = time.perf_counter() - t0
            records.append(record)
            say(f"table {spec.number} seed {seed} {row.label}: {record['status']} "
                f"({record['seconds']:.1f} s) {_brief(record['values'])}")  # fmt: skip
    floor = None
    if spec.noise_floor and data is not None:
        floor = noise_floor(data, any(r.conditional for r in spec.rows))
    return {"records": records, "floor": floor}


def _brief(values: dict[str, Any]) -> str:
    keys = ("nfe", "fd_features", "bits_per_dim", "factor_cls")
    parts = [f"{k}={values[k]:.4g}" if isinstance(values[k], float) else f"{k}={values[k]}"
             for k in keys if values.get(k) is not None]  # fmt: skip
    return " ".join(parts)
