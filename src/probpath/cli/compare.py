"""``probpath compare``: train every model on the same data and tabulate them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probpath.cli.app import app
from probpath.cli.errors import BadInput
from probpath.cli.options import check_positive, check_seed, load_data

__all__ = ["compare"]


@app.command()
def compare(
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated model names (default: every model in compare)."),
    ] = None,
    data: Annotated[str, typer.Option("--data", "-d", help="Data set name or file.")] = "digits",
    steps: Annotated[int | None, typer.Option(help="Optimizer steps per neural model.")] = None,
    time_budget: Annotated[
        float | None, typer.Option("--time", help="Training seconds per neural model.")
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="Small models, ~100 s of training shared by all; < 3 min on CPU.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "runs/compare"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the split, models, training and metrics.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:i].")] = "auto",
    n_eval: Annotated[
        int | None,
        typer.Option(help="Held-out points and samples per model (256 quick, else 1000)."),
    ] = None,
    n_nll: Annotated[
        int | None, typer.Option(help="Held-out points for the NLL (64 quick, else n-eval).")
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="Use only N samples of the data.")] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Labels of a data file (IDX, .npy or .csv; one integer per sample): labelled "
            "images get the classifier-feature FD."
        ),
    ] = None,
    conditional: Annotated[
        bool,
        typer.Option(
            "--conditional",
            help="Labelled data: fit the models that accept labels with them; they sample "
            "class-balanced and get class accuracy and per-class FD.",
        ),
    ] = False,
    guidance: Annotated[
        float | None,
        typer.Option(
            help="Classifier-free guidance weight of conditional path models (default: the "
            "model's, none); implies --conditional. NFE then reads N×2."
        ),
    ] = None,
    guidance_sweep: Annotated[
        str | None,
        typer.Option(
            help="One model (of --models) also sampled at w = 0, 0.5, 1, 2, 4: "
            "OUT/fd_vs_guidance.png; implies --conditional."
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Training seeds, e.g. 0,1,2: the comparison per seed on the split of --seed, "
            "each metric as mean ± sd (OUT/seed_K/ per seed)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Train every model on the same data under the same budget and compare them.

    Each model is trained on the same split (Trainer for neural models, fit for
    estimators), then sampled and scored on held-out data: NFE per sample, train time,
    sample time per 1,000, held-out NLL (exact / bound / none), MMD², sliced Wasserstein-2
    and energy distance. Writes OUT/table.md, table.csv, table.json and samples.png and
    prints the table; progress goes to stderr (each model's train / sample / score phases,
    with an ETA; --quiet for none). A model that fails gets a 'failed: ...' row and the
    others go on.

    Examples:

      probpath compare --quick

      probpath compare --models gaussian,gmm,realnvp,ddpm --data moons --time 30

      probpath compare --data digits --steps 3000 --out runs/digits --device cuda

      probpath compare --data t10k-images-idx3-ubyte.gz --labels t10k-labels-idx1-ubyte.gz

      probpath compare --models cfm,ddpm-v --data digits --seeds 0,1,2

      probpath compare --models cfm --data digits --guidance 1 --guidance-sweep cfm
    """
    from probpath.compare import resolve_device, run_compare, run_compare_seeds, select_entries

    def prepare():
        check_positive(steps, "--steps", integer=True)
        check_positive(time_budget, "--time")
        check_positive(n, "--n", integer=True)
        check_seed(seed)
        if n_eval is not None and n_eval < 2:
            raise BadInput(f"--n-eval must be >= 2, got {n_eval}")
        check_positive(n_nll, "--n-nll", integer=True)
        names = None
        if models is not None:
            names = [m.strip() for m in models.split(",") if m.strip()]
            if not names:
                raise BadInput("--models is empty; give names such as --models gaussian,gmm")
        resolve_device(device)
        if guidance is not None and not guidance >= 0:
            raise BadInput(f"--guidance must be a weight >= 0, got {guidance}")
        seed_list = None
        if seeds is not None:
            from probpath.metrics.seeds import parse_seeds

            try:
                seed_list = parse_seeds(seeds, minimum=2)
            except ValueError as exc:
                raise BadInput(f"--seeds: {exc}") from None
        if guidance_sweep is not None and names is not None and guidance_sweep not in names:
            raise BadInput(f"--guidance-sweep {guidance_sweep!r} must be one of --models")
        if out.exists() and not out.is_dir():
            raise BadInput(f"--out {out} is a file; choose a directory")
        dataset = load_data(data, n, seed, labels=labels)
        entries = select_entries(names, dataset)
        if not entries:
            raise BadInput(f"no model in compare can take data of shape {dataset.event_shape}")
        cond = conditional or guidance is not None or guidance_sweep is not None
        if cond and dataset.y is None:
            raise BadInput(
                "--conditional / --guidance need labelled data (a labelled data set, or "
                "--labels for a file)"
            )
        return names, dataset, seed_list, cond

    names, dataset, seed_list, cond = prepare()

    def work():
        options = dict(
            steps=steps, time_budget=time_budget, quick=quick, out_dir=out, device=device,
            n_eval=n_eval, n_nll=n_nll, verbose=not quiet, conditional=cond, guidance=guidance,
            guidance_sweep=guidance_sweep,
        )  # fmt: skip
        if seed_list is None:
            result = run_compare(names, dataset, seed=seed, **options)
        else:
            result = run_compare_seeds(names, dataset, seed_list, split_seed=seed, **options)
        typer.echo(result.markdown)
        typer.echo(f"wrote {', '.join(str(p) for p in result.files.values())}", err=True)

    work()
