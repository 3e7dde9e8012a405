"""``probpath survey``: regenerate the survey's Tables 1–4 at CPU scale."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from probpath.cli.app import app
from probpath.cli.errors import BadInput

__all__ = ["survey"]


@app.command()
def survey(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    tables: Annotated[str, typer.Option(help="Comma-separated tables to run (1-4).")] = "1,2,3,4",
    budget: Annotated[
        str,
        typer.Option(
            help="quick (<= 10 min on 2 CPU cores), standard (the reported run, 3 seeds) or "
            "SECONDS of training per model (a smoke test)."
        ),
    ] = "quick",
    seeds: Annotated[
        str | None, typer.Option(help="Comma-separated training seeds (default: the budget's).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:i].")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Regenerate the survey's Tables 1-4 at CPU scale, with a stated protocol.

    Table 1: unconditional digits (diffusion, flow, GAN and VAE families; DPM-Solver,
    DPM-Solver++ and UniPC at 10 NFE on one trained DDPM). Tables 2 / 3: class-conditional
    digits and shapes2d 32x32 (UNet vs DiT vs SiT with guidance, N×2 NFE, parameters).
    Table 4: VAE vs beta-VAE Factor-CLS on shapes2d and bits/dim on digits. Writes
    OUT/table1.md ... table4.md, OUT/report.html and OUT/survey.json (every number with
    its seed, the budget, versions and this command). docs/protocol.md states the protocol.

    Examples:

      probpath survey --out runs/survey

      probpath survey --tables 4 --budget standard --seeds 0,1,2 --out runs/t4

      probpath survey --tables 1 --budget 2 --out /tmp/smoke
    """
    from probpath.compare import resolve_device
    from probpath.survey import budget_from, parse_seeds, parse_tables, run_survey

    try:
        numbers = parse_tables(tables)
        plan = budget_from(budget)
        seed_list = None if seeds is None else parse_seeds(seeds)
    except ValueError as exc:  # the messages start with the option's name
        raise BadInput(f"--{exc}") from exc
    resolve_device(device)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; choose a directory")
    command = shlex.join(["probpath", *sys.argv[1:]])
    run_survey(
        numbers, budget=plan, seeds=seed_list, device=device, out_dir=out, command=command,
        verbose=not quiet,
    )  # fmt: skip
    for n in numbers:
        typer.echo((out / f"table{n}.md").read_text())
    typer.echo(f"wrote {out}/table*.md, report.html, survey.json", err=True)
