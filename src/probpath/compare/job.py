"""The main job, :func:`run_compare`: train, sample and score every selected model on one
split; the budget rules (:mod:`~probpath.compare.budget`), the feature classifier
(:mod:`~probpath.compare.features`), the notes (:mod:`~probpath.compare.notes`) and the
files written (:mod:`~probpath.compare.outputs`) live beside it."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from probpath.catalog import CatalogEntry, build_model
from probpath.compare.budget import QUICK_TRAIN_BUDGET, plan_sampling
from probpath.compare.evaluation import (
    compare_sample_metrics,
    conditional_note,
    conditional_plan,
    nll_of,
    sample_metrics,
    score_row,
)
from probpath.compare.features import CACHE_DIR, feature_classifier
from probpath.compare.fitting import (
    draw_samples,
    resolve_device,
    sampling_nfe,
    sampling_nfe_text,
    select_entries,
    train_model,
)
from probpath.compare.notes import compare_notes
from probpath.compare.outputs import (
    command_line,
    report_page,
    samples_grid,
    write_outputs,
)
from probpath.compare.report import write_report
from probpath.compare.runmodel import RunModel
from probpath.compare.space import DataSpace, dequantize_held_out
from probpath.compare.table import (
    CompareResult,
    CompareRow,
    fmt_value,
    format_markdown,
    json_safe,
    nll_cell,
)
from probpath.data.dataset import Dataset
from probpath.metrics import median_bandwidth
from probpath.training.progress import format_seconds, phase, resolve_mode

__all__ = ["MODEL_SIZES", "QUICK_TRAIN_BUDGET", "run_compare", "samples_grid"]  # re-exported

#: Whole-job target for ``--quick`` (start-up excluded); the per-model share shrinks to keep it.
_QUICK_DEADLINE = 160.0
#: With a time budget, sampling and the NLL each get this share of a model's training seconds
#: (path models switch to a few-step sampler and fewer NLL points to fit; compare.budget).
_SCORING_SHARE = 0.5
#: ``model_size`` choices of :func:`run_compare`.
MODEL_SIZES = ("auto", "full", "compact")


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
    conditional: bool = False,
    guidance: float | None = None,
    guidance_sweep: str | None = None,
    split_seed: int | None = None,
    verbose: bool = True,
    figure: bool = True,
    progress: str = "auto",
    command: str | None = None,
    model_size: str = "auto",
) -> CompareResult:
    """Train every selected model on the same split under the same budget and compare them.

    Args:
        models: catalog names, or ``None`` for every ``in_compare`` model that fits the data.
        dataset: a :class:`Dataset`, or a name / path for :func:`probpath.data.load_dataset`.
        steps: optimizer steps per neural model (whichever of steps / time comes first).
        time_budget: training seconds per neural model; it also bounds the rest: the
            feature classifier trains at most this long, and each model's sampling and NLL
            get about half of it (:mod:`probpath.compare.budget`), so the job takes about
            ``2 x time_budget`` per model plus the distances.
        quick: use each entry's ``quick_kwargs``, share :data:`QUICK_TRAIN_BUDGET` seconds
            equally among the neural models (unless ``steps`` / ``time_budget`` are given)
            and evaluate on at most 256 held-out points.
        out_dir: where ``table.md``, ``table.csv``, ``table.json``, ``samples.png`` and
            ``report.html`` go (written only once everything ran; the feature classifier's
            cache, ``.cache/``, as soon as it is trained); ``None`` writes nothing.
        seed: seeds the split, the models, training, sampling and the metrics.
        device: "auto", "cpu" or "cuda[:i]".
        n_eval: held-out points scored and samples drawn per model (default 256 quick,
            else 1000; at most the test split).
        n_nll: held-out points whose NLL is computed, the first ``n_nll`` of the ``n_eval``
            (default 64 quick — ODE likelihoods are the costly part — else ``n_eval``).
        test_fraction: share of the data held out.
        conditional: on labelled data, fit the models that accept labels
            (``Capabilities.accepts_labels``) with them; they sample class-balanced and get
            class accuracy and per-class FD.
        guidance: classifier-free guidance weight of conditional path models (``None``: the
            model's default, none); the NFE column then reads "N×2".
        guidance_sweep: one conditional model whose FD features and class accuracy are also
            measured at the weights of :data:`~probpath.compare.guidance.SWEEP_WEIGHTS`
            (``fd_vs_guidance.png``).
        split_seed: seed of the held-out split (default ``seed``); fix it to vary only the
            training seed (``compare --seeds``).
        verbose: print one summary line per model to stderr (``False``: nothing at all).
        figure: draw ``samples.png``.
        progress: how each model's phases (train / sample / score) report on stderr:
            ``"auto"``, ``"bar"``, ``"lines"`` or ``"off"`` (see
            :mod:`probpath.training.progress`); ``verbose=False`` turns it off.
        command: the command line shown in ``report.html`` (default: this process's).
        model_size: ``"compact"`` builds every model in its entry's quick configuration
            (smaller networks), ``"full"`` in its full one; ``"auto"`` (default) is compact
            for image models on a CPU — a full-size conv net costs seconds per training step
            there (ddpm-unet on 28 x 28: ~11 s per batch of 128, quiet machine) — and with
            ``quick``, full otherwise. The notes name the compact models.

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
    if model_size not in MODEL_SIZES:
        raise ValueError(f"model_size must be one of {MODEL_SIZES}, got {model_size!r}")
    dev = resolve_device(device)
    start = time.perf_counter()
    data = _load(dataset, seed)
    entries = select_entries(models, data)
    if not entries:
        raise ValueError(
            f"no catalog model can take data of shape {data.event_shape}; pass --models"
        )
    if guidance_sweep is not None and guidance_sweep not in [e.name for e in entries]:
        raise ValueError(f"guidance_sweep {guidance_sweep!r} must be one of the compared models")
    split_seed = seed if split_seed is None else split_seed  # also seeds the metrics' draws
    train, test = data.split(test_fraction, seed=split_seed)
    n_eval = min(int(n_eval or (256 if quick else 1000)), len(test))
    test = test.subset(torch.arange(n_eval))
    n_nll = min(int(n_nll or (64 if quick else n_eval)), n_eval)
    probe = DataSpace.for_entry(data)
    reference = dequantize_held_out(test.x.double(), probe, split_seed + 1)
    bandwidth = median_bandwidth(reference)
    unit = "bits/dim" if probe.bin_width is not None else "nats/dim"
    neural = [e for e in entries if not e.cls.capabilities.estimator]
    fixed_budget = time_budget
    scoring_budget = _SCORING_SHARE * time_budget if time_budget else None
    if quick and steps is None and time_budget is None:
        base = QUICK_TRAIN_BUDGET / max(1, len(neural))
    else:
        base = None
    with phase(
        "compare: feature classifier for FD features",
        mode=progress if verbose else "off",
        announce_after=1.0,
    ):  # trained like one more model: at most one model's training seconds
        classifier = feature_classifier(  # a fixed seed: the feature space is the protocol's
            train, probe, 0, time_budget=time_budget or base,
            cache_dir=None if out_dir is None else Path(out_dir) / CACHE_DIR,
        )  # fmt: skip
    extractor = None if classifier is None else classifier.extractor

    rows: list[CompareRow] = []
    figure_samples: dict[str, torch.Tensor] = {}
    job = _Job(
        train, test, reference, bandwidth, extractor, dev, seed, steps, quick, n_nll,
        figure_samples, progress if verbose else "off", conditional, guidance, guidance_sweep,
        split_seed=split_seed,
    )  # fmt: skip
    job.compact = {e.name for e in entries if _compact(e, model_size, quick, dev)}
    with phase("compare: noise floor", mode=job.progress, announce_after=1.0):
        floor = _noise_floor(job, probe)
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
            label = f"[{i}/{len(entries)}] {entry.name}"
            row = _compare_one(entry, row, job, budget, label, scoring_budget)
        except Exception as exc:  # one broken model must not sink the whole comparison
            msg = " ".join(str(exc).split()) or type(exc).__name__
            row.status = f"failed: {type(exc).__name__}: {msg[:120]}"
        if not caps.estimator:
            remaining_neural -= 1
        elapsed = time.perf_counter() - t_model
        overheads.append(max(0.0, elapsed - (row.train_seconds or 0.0)))
        rows.append(row)
        so_far = time.perf_counter() - start
        eta = so_far / i * (len(entries) - i)
        _say(_progress_line(i, len(entries), row, elapsed, eta), verbose)

    notes = compare_notes(
        probe, bandwidth, steps, time_budget, base, len(test), n_nll, quick=quick,
        compact=sorted(job.compact), model_size=model_size, classifier=classifier,
    )  # fmt: skip
    if conditional:
        notes.append(conditional_note(guidance, job.sweep))
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
            "model_size": model_size,
            "compact_models": sorted(job.compact),
            "conditional": conditional,
            "guidance": guidance,
            "guidance_sweep": job.sweep,
            "guidance_sweep_model": job.sweep_model,
            "split_seed": split_seed,
        },
        notes=notes,
        floor=floor,
    )
    result.markdown = format_markdown(result)
    if out_dir is not None:
        write_outputs(result, Path(out_dir), figure_samples, test, figure, sweep=job.sweep)
        page = report_page(
            result, reference, job.densities, job.histories, command or command_line(), dev
        )
        result.files["report.html"] = write_report(Path(out_dir) / "report.html", page)
    _say(f"compare: done in {time.perf_counter() - start:.1f} s", verbose)
    return result


@dataclass
class _Job:
    """What every model of one comparison shares."""

    train: Dataset
    test: Dataset
    reference: torch.Tensor  # held-out data, dequantised once, original space
    bandwidth: float
    extractor: Any  # metrics.FeatureExtractor for labelled images, else None
    device: torch.device
    seed: int
    steps: int | None
    quick: bool
    n_nll: int
    figure_samples: dict[str, torch.Tensor]
    progress: str = "off"
    conditional: bool = False
    guidance: float | None = None
    sweep_model: str | None = None
    sweep: list[dict] | None = None
    split_seed: int = 0  # the held-out split's seed, also of the metrics' own random draws
    histories: dict[str, list[dict]] = field(default_factory=dict)
    densities: dict[str, Any] = field(default_factory=dict)
    compact: set[str] = field(default_factory=set)  # entries built in their quick size


def _compact(entry: CatalogEntry, size: str, quick: bool, device: torch.device) -> bool:
    """Whether ``entry`` is built in its quick (compact) configuration (see ``model_size``)."""
    if size != "auto":
        return size == "compact"
    return quick or (entry.data == "image" and device.type == "cpu")


def _compare_one(
    entry: CatalogEntry,
    row: CompareRow,
    job: _Job,
    budget: float | None,
    label: str,
    scoring_budget: float | None,
) -> CompareRow:
    caps = entry.cls.capabilities
    space = DataSpace.for_entry(job.train, entry.data)
    torch.manual_seed(job.seed)
    model = build_model(
        entry,
        space.model_event_shape,
        job.train.num_classes
        if caps.conditional or (job.conditional and caps.accepts_labels)
        else None,
        quick=entry.name in job.compact,
    )
    # In logs the Trainer writes a line per 10 % or 30 s, but only between steps: a heartbeat
    # keeps a line at least every 30 s when one step takes longer (big images on a CPU).
    heartbeat = "lines" if resolve_mode(job.progress) == "lines" else "off"
    with phase(f"{label} train", mode=heartbeat, announce_after=30.0):
        outcome = train_model(
            model,
            job.train,
            space=space,
            steps=job.steps,
            time_budget=budget,
            seed=job.seed,
            device=job.device,
            quick=job.quick,
            trainer_options={"progress": job.progress, "progress_label": f"{label} train"},
        )
    model = outcome.model
    job.histories[entry.name] = outcome.history
    if _cheap_density(model, space):
        job.densities[entry.name] = RunModel(model, space).log_prob
    row.train_seconds = outcome.seconds
    row.train_steps = outcome.steps
    n = len(job.test)
    labels = conditional_plan(model, job.test, job.guidance)
    cond = labels.nll_cond
    with phase(f"{label} sample ({n})", mode=job.progress):
        plan = plan_sampling(model, space, n, job.n_nll, scoring_budget, seed=job.seed)
        samples, seconds = draw_samples(
            model, n, cond=labels.sample_cond, seed=job.seed + 2, **plan.options, **labels.options
        )
    row.sampler = plan.label
    row.sample_seconds_per_1k = seconds * 1000.0 / n
    row.nfe = sampling_nfe(model)
    row.nfe_text = sampling_nfe_text(model)
    samples = space.to_data(samples.double().cpu())
    job.figure_samples[entry.name] = samples[:64]
    k = plan.n_nll
    with phase(f"{label} score (NLL on {k}, distances on {n})", mode=job.progress):
        nll = nll_of(model, job.reference[:k], space, cond=None if cond is None else cond[:k])
        score_row(
            row, samples, job.reference, job.test.y, labels, bandwidth=job.bandwidth,
            seed=job.split_seed, extractor=job.extractor,
        )  # fmt: skip
    row.nll, row.nll_unit, row.nll_kind, row.nll_note = nll.value, nll.unit, nll.kind, nll.note
    if job.sweep_model == entry.name and labels.sample_cond is not None:
        from probpath.compare.guidance import guidance_sweep

        job.sweep = guidance_sweep(model, space, job, plan.options, labels)
    return row


def _progress_line(i: int, n: int, row: CompareRow, elapsed: float, eta: float) -> str:
    left = f", ETA {format_seconds(eta)}" if i < n else ""
    if row.status != "ok":
        return f"[{i}/{n}] {row.model:<16} {row.status} ({elapsed:.1f} s{left})"
    steps = "fit" if row.train_steps is None else f"{row.train_steps} steps"
    return (
        f"[{i}/{n}] {row.model:<16} train {row.train_seconds:6.2f} s ({steps}), "
        f"NLL {nll_cell(row)}, SW2 {fmt_value(row.swd)}, total {elapsed:.1f} s{left}"
    )


def _cheap_density(model, space: DataSpace) -> bool:
    """Whether a density plot is cheap: exact, unconditional, one pass (no ODE), 2-D data."""
    caps = model.capabilities
    return (
        space.event_shape == (2,)
        and caps.exact_log_prob
        and not caps.conditional
        and (caps.estimator or caps.one_step)
    )


def _noise_floor(job: _Job, space: DataSpace) -> dict[str, float] | None:
    """The distances between a second draw of the data (training points, as many as held
    out) and the held-out reference: what a perfect model would score at this sample size."""
    n = len(job.test)
    if len(job.train) < n:
        return None
    draw = dequantize_held_out(job.train.x[:n].double(), space, job.split_seed + 3)
    per_class = job.conditional and job.train.y is not None  # the training points' own labels
    which = compare_sample_metrics(features=job.extractor is not None, conditional=per_class)
    scores = sample_metrics(
        draw, job.reference, bandwidth=job.bandwidth, seed=job.split_seed, which=which,
        extractor=job.extractor, sample_labels=job.train.y[:n] if per_class else None,
        reference_labels=job.test.y,
    )  # fmt: skip
    return json_safe(scores)
