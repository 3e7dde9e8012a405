"""``probpath restore``: solve an inverse problem with a trained path model as the prior."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probpath.cli.app import app
from probpath.cli.errors import BadInput
from probpath.cli.options import check_positive, check_seed, load_run

__all__ = ["restore"]


@app.command()
def restore(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of a path model (probpath fit).")],
    task: Annotated[str, typer.Option(help="inpaint, superres, deblur or denoise.")],
    input: Annotated[Path, typer.Option("--input", help="Degraded image(s): .npy or .png.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .npy or .png.")],
    method: Annotated[str, typer.Option(help="Solver: ddnm, pigdm or dps.")] = "ddnm",
    sigma_y: Annotated[float, typer.Option(help="Observation noise std (data units).")] = 0.0,
    steps: Annotated[int, typer.Option(help="Sampler steps.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the sampler noise.")] = 0,
) -> None:
    """Restore degraded images with a trained diffusion / flow model (survey §6).

    Examples:

      probpath restore runs/ddpm-digits --task inpaint --input digit.npy --out fixed.png

      probpath restore runs/ddpm-digits --task denoise --sigma-y 3 --input noisy.npy --out d.npy
    """
    from probpath.compare.runmodel import is_path_model
    from probpath.inverse.restore import RESTORE_TASKS, restore_file
    from probpath.inverse.solvers import SOLVERS

    if task not in RESTORE_TASKS:
        raise BadInput(f"--task must be one of {', '.join(RESTORE_TASKS)}, got {task!r}")
    if method not in SOLVERS:
        raise BadInput(f"--method must be one of {', '.join(SOLVERS)}, got {method!r}")
    if not input.is_file():
        raise BadInput(f"--input {input} is not a file")
    if out.suffix.lower() not in (".npy", ".png"):
        raise BadInput(f"--out {out} must end in .npy or .png")
    if sigma_y < 0 or (task == "denoise" and sigma_y == 0):
        raise BadInput("--sigma-y must be >= 0 (and > 0 for --task denoise)")
    check_positive(steps, "--steps", integer=True)
    check_seed(seed)
    loaded, record = load_run(run_dir, "cpu", "auto")
    if not is_path_model(loaded):
        raise BadInput("restore needs a path model (ddpm, cfm, score-sde, ...)")
    space = record.space if record is not None else None
    x = restore_file(
        loaded, task, input, out, space=space, method=method, sigma_y=sigma_y, steps=steps,
        seed=seed,
    )  # fmt: skip
    typer.echo(f"{len(x)} restoration(s) ({method}, {task}) -> {out}")
