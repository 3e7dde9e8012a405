"""``probpath evaluate``: score a run on held-out data as compare does."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from probpath.cli.app import app
from probpath.cli.errors import BadInput
from probpath.cli.info_text import METRIC_NAMES
from probpath.cli.options import check_positive, check_seed, load_data, load_run

__all__ = ["evaluate"]


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by probpath fit.")],
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="Data to score (default: the run's held-out split)."),
    ] = None,
    metrics: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated, of: {', '.join(METRIC_NAMES)} (probpath info describes "
            "them; feature metrics need labelled images, per-class ones a conditional model)."
        ),
    ] = "nll,mmd,swd,energy",
    n: Annotated[int | None, typer.Option("--n", help="Score at most N points.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of sampling and dequantisation.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:i].")] = "cpu",
    weights: Annotated[str, typer.Option(help="auto, ema or model.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    max_params: Annotated[
        int | None,
        typer.Option(help="Raise the bound on the model's weights (tensor elements; default 1e8)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Score a fitted model on held-out data: NLL and sample distances, as compare does.

    Without --data (or with the run's own data set) the run's held-out split is scored (the
    share fit kept aside); the output says what was scored. NLL is in bits/dim for discrete
    data (uniform dequantisation) and nats/dim otherwise; MMD uses a Gaussian kernel with the
    median-distance bandwidth of the scored data.

    Examples:

      probpath evaluate runs/gmm-moons

      probpath evaluate runs/ddpm --data checkerboard --metrics nll,swd --json
    """
    from probpath.compare import (
        METRICS,
        DataSpace,
        evaluate_model,
        evaluation_data,
        resolve_device,
        unfit_reason,
    )

    def prepare():
        chosen = [m.strip() for m in metrics.split(",") if m.strip()]
        bad = [m for m in chosen if m not in METRICS]
        if not chosen or bad:
            raise BadInput(f"--metrics {metrics!r}: choose from {', '.join(METRICS)}")
        check_positive(n, "--n", integer=True)
        check_seed(seed)
        check_positive(max_params, "--max-params", integer=True)
        if weights not in ("auto", "ema", "model"):
            raise BadInput(f"--weights must be auto, ema or model, got {weights!r}")
        dev = resolve_device(device)
        loaded, record = load_run(run_dir, dev, weights, max_params)
        if record is not None:
            test, scored = evaluation_data(
                record.data, run_n=record.n, run_seed=record.seed, holdout=record.holdout,
                data=data, seed=seed,
            )  # fmt: skip
        elif data is None:
            raise BadInput(f"{run_dir} has no run.json; pass --data")
        else:
            test = load_data(data, None, seed)
            scored = f"{test.name} as given by --data ({len(test)} points)"
        if record is not None:
            space = record.space
            if tuple(test.event_shape) != space.event_shape:
                raise BadInput(
                    f"the data has shape {test.event_shape} per sample but the model was fitted "
                    f"on {space.event_shape}"
                )
        else:
            from probpath.catalog import entry_for_class, get_entry

            name = loaded.catalog_name  # saved in config.json by build_model's models
            entry = get_entry(name) if name else entry_for_class(type(loaded).__name__)
            why = unfit_reason(entry, test)
            if why is not None:
                raise BadInput(f"model {entry.name!r} {why}")
            space = DataSpace.for_entry(test, entry.data)
        from probpath.core.model import is_conditional

        if is_conditional(loaded) and test.y is None:
            raise BadInput("this conditional model needs labelled data")
        extractor = None
        if any(METRICS[m].needs_features for m in chosen):
            from probpath.metrics import extractor_for

            extractor = extractor_for(test)
            if extractor is None:
                raise BadInput(
                    f"--metrics {metrics!r}: feature metrics need labelled images (C, H, W); "
                    "leave them out for this data"
                )
        return chosen, loaded, record, test, space, scored, extractor

    chosen, loaded, record, test, space, scored, extractor = prepare()

    def work():
        t0 = time.perf_counter()
        result = evaluate_model(
            loaded, space, test, metrics=chosen, n=n, seed=seed,
            progress="off" if quiet else "auto", extractor=extractor,
        )  # fmt: skip
        result["scored"] = scored
        result["seconds"] = time.perf_counter() - t0
        result["model"] = record.model if record else type(loaded).__name__
        if as_json:
            from probpath.compare.table import json_safe

            typer.echo(json.dumps(json_safe(result), indent=2))
            return
        typer.echo(_evaluate_table(result, chosen))

    work()


def _evaluate_table(result: dict, chosen: list[str]) -> str:
    from probpath.metrics.registry import METRICS

    lines = ["| metric | value | better | note |", "|---|---|---|---|"]
    for m in chosen:
        spec = METRICS[m]
        if spec.needs_density:
            r = result["nll"]
            value = "—" if r["value"] is None else f"{r['value']:.4f} {r['unit']}"
            note = r["kind"] if r["value"] is not None else f"none — {r['note']}"
        else:
            value, note = f"{result[m]:.4g}", ""
            if m == "mmd":
                note = f"bandwidth {result['bandwidth']:.4g}, unbiased"
        lines.append(f"| {spec.label} | {value} | {spec.arrow} | {note} |")
    head = (
        f"{result['model']}: {result['n']} points of {result['scored']}, "
        f"{result['seconds']:.1f} s\n\n"
    )
    return head + "\n".join(lines)
