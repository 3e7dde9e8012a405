"""``run_survey``: run the selected tables and write ``tableN.md``, ``report.html`` and
``survey.json`` (every number with its seed, the budget, versions and the command)."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from probpath.compare import resolve_device
from probpath.core.serialization import atomic_write_bytes
from probpath.survey.render import aggregate, report_html, table_markdown
from probpath.survey.runner import (
    SPLIT_SEED,
    SurveyData,
    needs_features,
    prepare_data,
    run_table,
)
from probpath.survey.specs import TABLES, Budget, budget_from

__all__ = ["run_survey", "write_outputs", "merge_outputs", "parse_tables", "parse_seeds"]


def _int_list(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"1, 4,1"`` -> ``(1, 4)`` (order kept, repeats dropped); ``()`` if not integers."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        return tuple(dict.fromkeys(int(str(i).strip()) for i in items if str(i).strip()))
    except ValueError:
        return ()


def parse_tables(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``; every number must be a table of :data:`TABLES`."""
    numbers = _int_list(text)
    if not numbers or any(n not in TABLES for n in numbers):
        raise ValueError(
            f"tables must be a comma-separated subset of {sorted(TABLES)}, got {text!r}"
        )
    return numbers


def parse_seeds(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)`` (non-negative integers, at least one)."""
    seeds = _int_list(text)
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be comma-separated non-negative integers, got {text!r}")
    return seeds


def _notes(budget: Budget, seeds: Sequence[int], data: dict[str, Any] | None) -> list[str]:
    split = ""
    if data is not None:
        split = (
            f" Data: {data['name']}, {data['n_train']} training points, {data['n_test']} "
            f"held-out points (split seed {SPLIT_SEED}, the same for every seed)."
        )
    return [
        f"Budget '{budget.name}': {budget.train_seconds:g} s of training per model (each "
        f"entry's quick configuration), as many samples per row as held-out points (at "
        f"most {budget.n_eval}); seeds "
        f"{', '.join(map(str, seeds))}; cells are mean ± sd over the seeds that ran.{split}",
        "FD features: Fréchet distance between Gaussian fits of the penultimate features of a "
        f"classifier trained once on the training split (seed {SPLIT_SEED}), inputs snapped to "
        "the pixel levels; precision / recall: Kynkäänniemi et al. (k = 3) in the same "
        "features; class acc.: share of conditional samples the classifier labels as asked.",
        "Survey column: the published number of the closest method on the survey's data "
        "(CIFAR-10 / ImageNet / 2D Shapes, FID): a reference for orderings, not comparable in "
        "value.",
    ]


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def run_survey(
    tables: Sequence[int] = (1, 2, 3, 4),
    *,
    budget: str | float | Budget = "quick",
    seeds: Sequence[int] | None = None,
    device: str = "auto",
    out_dir: str | Path = "runs/survey",
    command: str = "",
    verbose: bool = True,
) -> dict[str, Any]:
    """Run the survey's tables and write ``table<N>.md``, ``report.html``, ``survey.json``.

    Args:
        tables: table numbers (keys of :data:`~probpath.survey.specs.TABLES`).
        budget: "quick" (≤ 10 min on 2 CPU cores), "standard" (the reported run), a number of
            training seconds per model, or a :class:`Budget`.
        seeds: training seeds (default: the budget's).
        device: "auto", "cpu" or "cuda[:i]".
        out_dir: output directory (created).
        command: the command line recorded in the outputs.
        verbose: one line per row and seed on stderr.

    Returns:
        The JSON document written to ``survey.json`` (non-finite numbers as ``None``).
    """
    numbers = parse_tables(list(tables))
    plan = budget if isinstance(budget, Budget) else budget_from(budget)
    seeds = parse_seeds(list(seeds)) if seeds is not None else plan.seeds
    dev = resolve_device(device)
    from probpath.training.seeding import environment

    def say(message: str) -> None:
        if verbose:
            print(message, file=sys.stderr, flush=True)

    start = time.perf_counter()
    cache: dict[tuple[str, bool], SurveyData] = {}
    doc_tables: dict[str, Any] = {}
    for number in numbers:
        spec = TABLES[number]
        key = (spec.dataset, needs_features(spec))
        if key not in cache and (spec.dataset, True) in cache:
            key = (spec.dataset, True)  # a feature classifier already trained does no harm
        if key not in cache:
            say(f"survey: preparing {spec.dataset} (split{', feature classifier' * key[1]})")
            cache[key] = prepare_data(spec.dataset, plan.n_eval, features=key[1])
        data = cache[key]
        t0 = time.perf_counter()
        result = run_table(spec, plan, seeds, dev, data=data, log=say)
        about = {"name": data.name, "n_train": len(data.train), "n_test": len(data.test)}
        doc_tables[str(number)] = {
            "spec": asdict(spec),
            "data": about,
            "records": result["records"],
            "summary": aggregate(spec, result["records"]),
            "floor": result["floor"],
            "notes": _notes(plan, seeds, about),
            "seconds": time.perf_counter() - t0,
        }
        say(f"survey: table {number} done in {time.perf_counter() - t0:.0f} s")
    doc = {
        "command": command,
        "budget": asdict(plan),
        "seeds": list(seeds),
        "device": str(dev),
        "environment": environment(dev),
        "split_seed": SPLIT_SEED,
        "seconds": time.perf_counter() - start,
        "tables": doc_tables,
    }
    write_outputs(doc, out_dir)
    say(f"survey: done in {time.perf_counter() - start:.0f} s -> {out_dir}")
    return _finite(doc)


def write_outputs(doc: dict[str, Any], out_dir: str | Path) -> None:
    """Write ``table<N>.md`` for every table of ``doc``, ``report.html`` and ``survey.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = _finite(doc)
    rendered = []
    for key in sorted(doc["tables"], key=int):
        entry = doc["tables"][key]
        spec = TABLES[int(key)]
        parts = (spec, entry["summary"], entry["floor"], entry["notes"])
        atomic_write_bytes(out / f"table{key}.md", table_markdown(*parts).encode())
        rendered.append(parts)
    text = json.dumps(doc, indent=1, allow_nan=False, ensure_ascii=False) + "\n"
    atomic_write_bytes(out / "survey.json", text.encode())
    page = report_html(rendered, command=str(doc["command"]), environment=doc["environment"])
    atomic_write_bytes(out / "report.html", page.encode())


def merge_outputs(runs: Sequence[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Join the ``survey.json`` of runs that each did some tables or seeds (e.g. in parallel
    processes) into one set of outputs in ``out_dir``. Their budgets must agree; the records
    of a table found in several runs are pooled (a seed run twice is kept once, the last)."""
    docs = [json.loads((Path(r) / "survey.json").read_text()) for r in runs]
    if not docs:
        raise ValueError("merge_outputs needs at least one run directory")
    if any(d["budget"] != docs[0]["budget"] for d in docs):
        raise ValueError("the runs have different budgets; merge only runs of one budget")
    plan = Budget(**{**docs[0]["budget"], "seeds": tuple(docs[0]["budget"]["seeds"])})
    tables: dict[str, Any] = {}
    for d in docs:
        for key, table in d["tables"].items():
            if key not in tables:
                tables[key] = {**table, "records": [], "seconds": 0.0}
            merged = tables[key]
            merged["floor"] = table["floor"]
            merged["seconds"] += table["seconds"]
            keep = {(r["row"], r["seed"]) for r in table["records"]}
            merged["records"] = [
                r for r in merged["records"] if (r["row"], r["seed"]) not in keep
            ] + table["records"]
    for key, table in tables.items():
        seeds = sorted({r["seed"] for r in table["records"] if r["seed"] is not None})
        table["records"].sort(key=lambda r: -1 if r["seed"] is None else r["seed"])
        table["spec"] = asdict(TABLES[int(key)])
        table["summary"] = aggregate(TABLES[int(key)], table["records"])
        table["notes"] = _notes(plan, seeds, table.get("data"))
    merged_doc = dict(docs[0])
    merged_doc["command"] = " ; ".join(dict.fromkeys(d["command"] for d in docs))
    merged_doc["seconds"] = sum(d["seconds"] for d in docs)
    merged_doc["seeds"] = sorted({s for d in docs for s in d["seeds"]})
    merged_doc["tables"] = dict(sorted(tables.items(), key=lambda kv: int(kv[0])))
    write_outputs(merged_doc, out_dir)
    return merged_doc
