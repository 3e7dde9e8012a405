"""``compare --seeds 0,1,2``: the comparison repeated over training seeds on one fixed
held-out split, each metric reported as mean ± sd (:mod:`probpath.metrics.seeds`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from probpath.compare.job import run_compare
from probpath.compare.table import (
    TABLE_METRICS,
    CompareResult,
    CompareRow,
    csv_text,
    format_markdown,
    json_safe,
)
from probpath.data.dataset import Dataset
from probpath.metrics.seeds import summarise

__all__ = ["aggregate_seeds", "run_compare_seeds"]

#: Row fields averaged over seeds besides the metrics (each an ``int | float | None``).
_AVERAGED = ("train_seconds", "sample_seconds_per_1k")


def aggregate_seeds(results: Sequence[CompareResult], seeds: Sequence[int]) -> CompareResult:
    """One table from per-seed results of the same models and split: each metric cell is the
    mean over the seeds where the row ran, its sample sd in ``spread``.

    Raises:
        ValueError: the results list different models.
    """
    if not results:
        raise ValueError("results is empty; run at least one seed")
    names = [r.model for r in results[0].rows]
    if any([r.model for r in res.rows] != names for res in results):
        raise ValueError("every seed's result must list the same models in the same order")
    rows: list[CompareRow] = []
    spread: dict[str, dict[str, float]] = {}
    fields = [s.name for s in TABLE_METRICS] + list(_AVERAGED)
    for i, name in enumerate(names):
        ok = [res.rows[i] for res in results if res.rows[i].status == "ok"]
        if not ok:
            rows.append(results[0].rows[i])
            continue
        summaries = {f: summarise(getattr(r, f) for r in ok) for f in fields}
        means = {f: (s.mean if s.n else None) for f, s in summaries.items()}
        steps = [r.train_steps for r in ok if r.train_steps is not None]
        row = replace(ok[0], **means, train_steps=round(sum(steps) / len(steps)) if steps else None)
        if len(ok) < len(results):
            row.sampler = f"{row.sampler} ({len(ok)}/{len(results)} seeds ran)"
        rows.append(row)
        spread[name] = {f: s.sd for f, s in summaries.items() if f not in _AVERAGED and s.n > 1}
    first = results[0]
    floor = first.floor  # the split is fixed: the floor is the same for every seed
    settings = {**first.settings, "seeds": list(seeds), "seed": None}
    notes = [*first.notes, f"Each row: mean over training seeds {list(seeds)}."]
    return CompareResult(
        rows, first.dataset, first.n_train, first.n_test, first.dim, settings, notes,
        floor=floor, spread=spread,
    )  # fmt: skip


def run_compare_seeds(
    models: Sequence[str] | None,
    dataset,
    seeds: Sequence[int],
    *,
    split_seed: int = 0,
    out_dir: str | Path | None = "runs/compare",
    **options: Any,
) -> CompareResult:
    """:func:`~probpath.compare.run_compare` once per training seed on the split of
    ``split_seed`` (``OUT/seed_K/`` each), then ``OUT/table.md`` / ``.csv`` / ``.json`` with
    mean ± sd per metric.

    Args:
        models, dataset, options: as for :func:`~probpath.compare.run_compare`.
        seeds: training seeds (the protocol asks for at least 3).
        split_seed: seed of the held-out split, fixed across the seeds.
        out_dir: output directory (``None``: nothing written).
    """
    if not isinstance(dataset, Dataset):  # a name: draw the data once, with the split's seed
        from probpath.data import load_dataset

        dataset = load_dataset(str(dataset), seed=split_seed)
    results = []
    for s in seeds:
        sub = None if out_dir is None else Path(out_dir) / f"seed_{s}"
        results.append(
            run_compare(models, dataset, seed=s, split_seed=split_seed, out_dir=sub, **options)
        )
    result = aggregate_seeds(results, seeds)
    result.markdown = format_markdown(result)
    if out_dir is not None:
        from probpath.core.serialization import atomic_write_bytes

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        payload = {**result.to_dict(), "per_seed": [r.to_dict() for r in results]}
        text = json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n"
        files = {
            "table.md": result.markdown.encode(),
            "table.csv": csv_text(result.rows).encode(),
            "table.json": text.encode(),
        }
        for name, data in files.items():
            result.files[name] = atomic_write_bytes(out / name, data)
        result.out_dir = out
    return result
