"""The ``probpath`` command: ``info``, ``fit``, ``sample``, ``evaluate`` and ``compare``.

Every command validates all of its input before it trains or writes anything. Bad input
(an unknown model, unreadable data, a bad option value, a malformed ``key=value``) ends with
exit code 2 and one line on stderr that says what to do; a failure while running ends with
exit code 1 and one line (set ``PROBPATH_DEBUG=1`` to see the traceback). Files are written
atomically, and ``fit`` builds its run directory aside and renames it into place at the end.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

__all__ = ["app", "main"]


class _OneLineErrors(TyperGroup):
    """Report command-line usage errors (bad option values, missing arguments) in one line.

    Click's own report is a boxed, multi-line usage message; here it becomes
    ``error: <what is wrong> (see 'probpath CMD --help')`` with click's exit code (2).
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except Exception as exc:
            if not (hasattr(exc, "exit_code") and hasattr(exc, "format_message")):
                raise
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError":
                code = exc.exit_code  # the help text has been printed already
            else:
                where = ctx.command_path if ctx is not None else "probpath"
                message = " ".join(str(exc.format_message()).split())
                typer.echo(f"error: {message} (see '{where} --help')", err=True)
                code = exc.exit_code
            if standalone_mode:
                sys.exit(code)
            return code
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


app = typer.Typer(
    name="probpath",
    cls=_OneLineErrors,
    help=(
        "probpath: probabilistic modeling of data, from a single Gaussian to flow matching, "
        "under one API. Run 'probpath info' for the models and data sets, 'probpath compare "
        "--quick' for the main job."
    ),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


class _BadInput(Exception):
    """Input the user can fix: exit code 2."""


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


def _validate(fn: Callable[[], Any]) -> Any:
    """Run a validation step: ``ValueError`` / ``CheckpointError`` / ``OSError`` -> exit 2."""
    if os.environ.get("PROBPATH_DEBUG"):
        return fn()
    try:
        return fn()
    except (_BadInput, ValueError, TypeError, OSError) as exc:
        _fail(str(exc) or type(exc).__name__, 2)


def _run(fn: Callable[[], Any]) -> Any:
    """Run the work itself: an unexpected failure -> one line and exit code 1."""
    if os.environ.get("PROBPATH_DEBUG"):
        return fn()
    try:
        return fn()
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI reports, the library raises
        _fail(f"{type(exc).__name__}: {exc} (set PROBPATH_DEBUG=1 for the traceback)", 1)


def _positive(value, name: str, *, integer: bool = False) -> None:
    if value is None:
        return
    ok = value >= 1 if integer else (math.isfinite(value) and value > 0)
    if not ok:
        raise _BadInput(f"{name} must be {'>= 1' if integer else '> 0'}, got {value}")


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------


@app.command()
def info() -> None:
    """List the models, probability paths (schedules), samplers and data sets.

    Each model line gives its name (for fit and compare), the survey route and section,
    the kind of likelihood it reports (exact, bound or none), the data it takes and a
    one-line summary.

    Example: probpath info
    """
    from probpath.catalog import CATALOG

    out = io.StringIO()
    entries = list(CATALOG)
    out.write(f"Models ({len(entries)}):\n")
    out.write(f"  {'name':<18} {'route':<12} {'§':<8} {'likelihood':<10} {'data':<7} summary\n")
    for e in entries:
        caps = e.cls.capabilities
        flag = "" if e.in_compare else " [not in compare]"
        out.write(
            f"  {e.name:<18} {caps.route:<12} {caps.section:<8} {caps.likelihood_kind:<10} "
            f"{e.data:<7} {e.summary}{flag}\n"
        )
    out.write("\nPaths (noise schedules x_t = alpha_t x0 + sigma_t eps, t = 0 data, 1 noise):\n")
    out.write(_schedules_text())
    out.write("\nSamplers (probpath sample RUN --sampler NAME --steps K):\n")
    out.write(_samplers_text())
    out.write("\nData sets (--data NAME, or a path to .npy/.npz/.csv/IDX/image folder):\n")
    out.write(_datasets_text())
    typer.echo(out.getvalue().rstrip("\n"))


def _first_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].replace("``", "") if doc else ""


def _schedules_text() -> str:
    try:
        from probpath.paths.schedules import SCHEDULES
    except ImportError:
        return "  (not available in this build)\n"
    return "".join(f"  {name:<18} {_first_line(cls)}\n" for name, cls in SCHEDULES.items())


def _samplers_text() -> str:
    try:
        from probpath.sampling import SAMPLER_SPECS
    except ImportError:
        return "  (not available in this build)\n"
    return "".join(f"  {name:<18} {spec.summary}\n" for name, spec in SAMPLER_SPECS.items())


def _datasets_text() -> str:
    try:
        from probpath.data import available_datasets
    except ImportError:
        return "  (not available in this build)\n"
    return "  " + ", ".join(available_datasets()) + "\n"


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


@app.command(context_settings=_EXTRA)
def fit(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Catalog name of the model (see probpath info).")],
    data: Annotated[
        str, typer.Option("--data", "-d", help="Data set name (see probpath info) or a file.")
    ] = "digits",
    steps: Annotated[
        int | None, typer.Option(help="Optimizer steps (neural models). Default: Trainer's.")
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time",
            help="Training time budget in seconds (whichever of steps / time comes first; "
            "the learning rate decays to 0 over it).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (default: runs/MODEL-DATA).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:i].")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the data split, model and training.")] = 0,
    batch_size: Annotated[int | None, typer.Option(help="Batch size per process.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Use only N samples of the data.")] = None,
    holdout: Annotated[
        float, typer.Option(help="Share of the data held out for 'probpath evaluate'.")
    ] = 0.1,
    quick: Annotated[bool, typer.Option(help="Use the model's small quick configuration.")] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Model option key=value (JSON value); repeatable."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue an interrupted or finished run from its last checkpoint (give the "
            "same model, data and options; --steps is the new total)."
        ),
    ] = None,
) -> None:
    """Train (or fit) one model on a data set and save it as a run directory.

    Model options are the model's constructor arguments, given either as --set key=value
    (the value is read as JSON: 8, 0.5, true, [64,64], "text") or directly as --key-name
    value: '--n-components 8' is n_components=8. Unknown option names are refused with the
    list of valid ones. A share of the data (--holdout) is kept aside for 'probpath
    evaluate'.

    The run directory holds config.json, model.safetensors (plus ema.safetensors, trainer
    state and metrics.jsonl for neural models) and run.json (data set and data scaling). It
    is written aside and moved into place only when training succeeded.

    Examples:

      probpath fit gmm --data moons --n-components 8

      probpath fit ddpm --data checkerboard --time 60 --out runs/ddpm

      probpath fit realnvp --data digits --steps 2000 --set hidden=[128,128]

      probpath fit ddpm --data moons --steps 20000 --resume runs/ddpm-moons

      torchrun --nproc_per_node=2 -m probpath fit cfm --data moons --steps 5000
    """
    from probpath.catalog import build_model, get_entry
    from probpath.cli.options import merge_options, parse_extra_args, parse_set_options
    from probpath.cli.rundir import check_output_dir
    from probpath.compare import DataSpace, resolve_device, unfit_reason
    from probpath.training.distributed import is_main_process

    def prepare():
        entry = get_entry(model)
        kwargs = merge_options(parse_extra_args(ctx.args), parse_set_options(set_ or []))
        _positive(steps, "--steps", integer=True)
        _positive(time_budget, "--time")
        _positive(batch_size, "--batch-size", integer=True)
        _positive(lr, "--lr")
        _positive(n, "--n", integer=True)
        if not 0.0 <= holdout < 1.0:
            raise _BadInput(f"--holdout must be in [0, 1), got {holdout}")
        dev = resolve_device(device)
        dataset = _load_data(data, n, seed)
        why = unfit_reason(entry, dataset)
        if why is not None:
            raise _BadInput(f"model {entry.name!r} {why}; pick another model or data set")
        train = dataset
        if holdout > 0:
            train, _ = dataset.split(holdout, seed=seed)
        space = DataSpace.for_entry(dataset, entry.data)
        caps = entry.cls.capabilities
        try:
            built = build_model(
                entry,
                space.model_event_shape,
                dataset.num_classes if caps.conditional else None,
                quick=quick,
                **kwargs,
            )
        except TypeError as exc:
            raise _BadInput(f"invalid options for model {entry.name!r}: {exc}") from None
        except ValueError as exc:
            raise _BadInput(f"invalid options for model {entry.name!r}: {exc}") from None
        if resume is not None:
            from probpath.training.checkpoint import has_checkpoint

            if caps.estimator or not has_checkpoint(resume):
                raise _BadInput(
                    f"--resume {resume} holds no trainer checkpoint (estimators are refitted, "
                    "not resumed); start a new run with --out instead"
                )
            target = Path(resume)
            if target.name.startswith(".") and target.name.endswith(".partial"):
                target = target.parent / target.name[1 : -len(".partial")]
            return entry, kwargs, dev, dataset, train, space, built, target
        target = out or Path("runs") / f"{entry.name}-{dataset.name}"
        if is_main_process():
            check_output_dir(target, overwrite)
        return entry, kwargs, dev, dataset, train, space, built, Path(target)

    entry, kwargs, dev, dataset, train, space, built, target = _validate(prepare)

    def work():
        return _fit_run(
            entry, kwargs, dev, dataset, train, space, built, target,
            data=data, n=n, seed=seed, holdout=holdout, steps=steps, time_budget=time_budget,
            batch_size=batch_size, lr=lr, quick=quick, resume=resume,
        )  # fmt: skip

    _run(work)


def _load_data(data: str, n: int | None, seed: int):
    from probpath.data import load_dataset

    return load_dataset(data, n=n, seed=seed)


def _fit_run(
    entry, kwargs, dev, dataset, train, space, built, target: Path, *, data, n, seed, holdout,
    steps, time_budget, batch_size, lr, quick, resume=None,
) -> None:  # fmt: skip
    import torch

    from probpath.cli.rundir import (
        RunRecord,
        publish,
        staging_path,
        write_run_record,
    )
    from probpath.compare import train_model
    from probpath.training.distributed import is_main_process

    main_rank = is_main_process()
    staging = Path(resume) if resume is not None else staging_path(target)
    if main_rank and resume is None and staging.exists():
        shutil.rmtree(staging)
    torch.manual_seed(seed)
    try:
        outcome = train_model(
            built, train, space=space, steps=steps, time_budget=time_budget, seed=seed,
            device=dev, batch_size=batch_size, lr=lr, out_dir=staging, quick=quick,
            resume=resume,
        )  # fmt: skip
        if not main_rank:
            return
        if not (staging / "config.json").is_file():
            built.save(staging)
        source = str(Path(data).resolve()) if Path(data).exists() else data
        record = RunRecord(
            model=entry.name,
            data=source,
            space=space,
            n=n,
            seed=seed,
            holdout=holdout,
            num_classes=dataset.num_classes,
            fit={
                "seconds": outcome.seconds,
                "steps": outcome.steps,
                "final_loss": outcome.final_loss,
                "used_ema": outcome.used_ema,
                "device": str(dev),
                "options": kwargs,
                "quick": quick,
            },
        )
        write_run_record(staging, record)
        if staging != target:
            publish(staging, target)
    except BaseException:
        from probpath.training.checkpoint import has_checkpoint

        if main_rank and staging.exists() and resume is None:
            if has_checkpoint(staging):  # keep the checkpoints so the run can continue
                typer.echo(
                    f"checkpoints kept in {staging}; continue with --resume {staging}", err=True
                )
            else:
                shutil.rmtree(staging, ignore_errors=True)
        raise
    what = "fit" if outcome.steps is None else f"{outcome.steps} steps"
    loss = "" if outcome.final_loss is None else f", final loss {outcome.final_loss:.4g}"
    typer.echo(
        f"{entry.name} on {dataset.name} ({len(train)} train samples): {what} in "
        f"{outcome.seconds:.1f} s{loss}{' (EMA weights)' if outcome.used_ema else ''} -> "
        f"{target}  (next: probpath sample {target} --n 1000 --out samples.png; "
        f"probpath evaluate {target})"
    )


# --------------------------------------------------------------------------------------------
# sample
# --------------------------------------------------------------------------------------------


@app.command()
def sample(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by probpath fit.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .npy or .png.")],
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 1000,
    sampler: Annotated[
        str | None, typer.Option(help="Sampler name (path models; see probpath info).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps (path models).")] = None,
    grid: Annotated[
        str | None,
        typer.Option(
            help="Time grid (path models): a spacing (uniform, log_snr, edm, quadratic) or "
            "'optimized' (fitted to the model for this sampler and steps on first use, saved "
            "in RUN/grids.json)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampling noise.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:i].")] = "cpu",
    weights: Annotated[
        str, typer.Option(help="auto (EMA when fit used it), ema or model.")
    ] = "auto",
    label: Annotated[
        int | None, typer.Option(help="Class label for conditional models (default: random).")
    ] = None,
    trajectories: Annotated[
        bool,
        typer.Option(
            help="Path models on 2-D data: plot each sample's path from noise to data (.png)."
        ),
    ] = False,
    clip_x0: Annotated[
        bool,
        typer.Option(
            "--clip-x0",
            help="Path models on bounded data (images): clamp every x0 prediction to the "
            "data range (diffusers' clip_sample); keeps ODE samplers of short-trained "
            "eps-models in range.",
        ),
    ] = False,
) -> None:
    """Draw samples from a fitted model and save them as .npy (array) or .png (plot).

    Samples come back in the data's own space and shape (a vector model fitted on images
    gives images). --sampler and --steps are passed to the model only when given.

    Examples:

      probpath sample runs/gmm-moons --n 2000 --out gmm.png

      probpath sample runs/ddpm --n 500 --sampler dpmpp_2m --steps 10 --out ddpm.npy

      probpath sample runs/ddpm-digits --sampler dpmpp_2m --steps 20 --clip-x0 --out d.png

      probpath sample runs/cfm --sampler unipc --steps 5 --grid optimized --out cfm.npy
    """
    import torch

    from probpath.compare import resolve_device

    def prepare():
        _positive(n, "--n", integer=True)
        _positive(steps, "--steps", integer=True)
        if out.suffix.lower() not in (".npy", ".png"):
            raise _BadInput(f"--out {out} must end in .npy (array) or .png (plot)")
        if out.exists() and out.is_dir():
            raise _BadInput(f"--out {out} is a directory; give a file name ending in .npy/.png")
        if weights not in ("auto", "ema", "model"):
            raise _BadInput(f"--weights must be auto, ema or model, got {weights!r}")
        dev = resolve_device(device)
        loaded, record = _load_run(run_dir, dev, weights)
        cond = None
        if loaded.capabilities.conditional:
            classes = record.num_classes if record is not None else 0
            if label is not None and classes and not 0 <= label < classes:
                raise _BadInput(f"--label must be in [0, {classes - 1}], got {label}")
            g = torch.Generator().manual_seed(seed + 1)
            if label is not None:
                cond = torch.full((n,), label, dtype=torch.long)
            elif classes:
                cond = torch.randint(0, classes, (n,), generator=g)
            else:
                raise _BadInput("this conditional model needs --label (the run has no record)")
        elif label is not None:
            raise _BadInput("--label is only for conditional models")
        return loaded, record, cond

    loaded, record, cond = _validate(prepare)
    path: list = []

    def check_trajectories():
        event = tuple(record.space.event_shape) if record is not None else None
        if not hasattr(loaded, "field") or event != (2,) or out.suffix.lower() != ".png":
            raise _BadInput(
                "--trajectories needs a path model (ddpm, cfm, ...) fitted on 2-D data and "
                "an --out ending in .png"
            )

    if trajectories:
        _validate(check_trajectories)

    def clip_range():
        space = record.space if record is not None else None
        if not hasattr(loaded, "field") or space is None or space.value_range is None:
            raise _BadInput(
                "--clip-x0 needs a path model (ddpm, cfm, ...) fitted on bounded data "
                "(images, counts); the data range of this run is unknown"
            )
        low, high = (space.scale * v + space.shift for v in space.value_range)
        return (min(low, high), max(low, high))

    clip = _validate(clip_range) if clip_x0 else None

    def grid_times():
        if not hasattr(loaded, "field"):
            raise _BadInput("--grid needs a path model (ddpm, cfm, ...)")
        if grid != "optimized":
            return grid
        from probpath.sampling.optimize import load_grid, optimize_grid, save_grid

        name, k = sampler or loaded.default_sampler, steps or loaded.default_steps
        ts = load_grid(run_dir, name, k)
        if ts is None:
            fit = optimize_grid(
                loaded.field, k, loaded.event_shape, sampler=name, dtype=loaded.dtype
            )
            save_grid(run_dir, fit)
            typer.echo(
                f"optimized {name} grid, {k} steps: RMS error {fit.initial_error:.3g} -> "
                f"{fit.error:.3g} vs a fine solve; cost {fit.nfe} NFE x 256 draws, "
                f"{fit.seconds:.1f} s (saved in {run_dir / 'grids.json'})",
                err=True,
            )
            ts = fit.ts
        return ts

    grid_arg = _validate(grid_times) if grid is not None else None

    def keep(info):  # the sampler's callback: the state after every step
        path.append(info["x"].detach().double().cpu())

    def draw():
        from probpath.compare import draw_samples

        extra = {"callback": keep} if trajectories else {}
        if clip is not None:
            extra["clip_x0"] = clip
        if grid_arg is not None:
            extra["grid"] = grid_arg
        try:
            x, seconds = draw_samples(
                loaded, n, cond=cond, seed=seed, sampler=sampler, steps=steps, **extra
            )
        except TypeError as exc:
            if sampler is not None or steps is not None:
                raise _BadInput(
                    f"this model takes no --sampler/--steps options ({exc}); leave them out"
                ) from None
            raise
        return x, seconds

    x, seconds = _validate(draw) if (sampler or steps) else _run(draw)

    def save():
        samples = x.detach().double().cpu()
        if record is not None:
            samples = record.space.to_data(samples)
        vr = record.space.value_range if record is not None else None
        name = record.model if record is not None else type(loaded).__name__
        if trajectories:
            steps_x = [record.space.to_data(p) for p in path]
            _save_trajectories(steps_x, out, title=f"{name}: {n} sampling paths")
        else:
            density = _cheap_density(loaded, record) if samples.shape[1:] == (2,) else None
            _save_samples(
                samples, out, title=f"{name}: {n} samples", value_range=vr, density=density
            )
        typer.echo(f"{n} samples in {seconds:.2f} s -> {out}")

    _run(save)


def _load_run(run_dir: Path, dev, weights: str):
    from probpath.cli.rundir import load_run

    return load_run(run_dir, device=str(dev), weights=weights)


def _cheap_density(model, record):
    """``log p`` on a plotting grid for exact, cheap (estimator or one-pass) 2-D models."""
    import torch

    caps = model.capabilities
    if not caps.exact_log_prob or caps.conditional or not (caps.estimator or caps.one_step):
        return None
    dtype = torch.float64
    if isinstance(model, torch.nn.Module):
        dtype = next(model.parameters()).dtype

    def log_prob(grid):
        z = grid.double() if record is None else record.space.to_model(grid.double())
        return model.log_prob(z.to(dtype))

    return log_prob


def _save_trajectories(path: list, out: Path, title: str) -> None:
    """Plot the sampler's states ``T x (n, 2)`` as paths from noise to data."""
    from matplotlib.figure import Figure

    from probpath.plotting import plot_trajectories, save_figure

    fig = Figure(figsize=(4.0, 4.0), layout="constrained")
    ax = fig.subplots()
    plot_trajectories(ax, path)
    ax.set_title(title, fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out)


def _save_samples(samples, out: Path, title: str, value_range=None, density=None) -> None:
    import numpy as np

    from probpath.core.serialization import atomic_write_bytes

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        buf = io.BytesIO()
        np.save(buf, samples.numpy().astype(np.float32), allow_pickle=False)
        atomic_write_bytes(out, buf.getvalue())
        return
    from matplotlib.figure import Figure

    from probpath.plotting import plot_density, plot_samples, save_figure

    fig = Figure(figsize=(4.0, 4.0), layout="constrained")
    ax = fig.subplots()
    if density is not None:  # the model's density as contours, its samples on top
        plot_density(ax, density, samples)
        ax.set_title(title, fontsize=9)
    else:
        plot_samples(ax, samples, tuple(samples.shape[1:]), title, value_range=value_range)
    save_figure(fig, out)


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by probpath fit.")],
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="Data to score (default: the run's held-out split)."),
    ] = None,
    metrics: Annotated[
        str, typer.Option(help="Comma-separated: nll, mmd, swd, energy, fd.")
    ] = "nll,mmd,swd,energy",
    n: Annotated[int | None, typer.Option("--n", help="Score at most N points.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of sampling and dequantisation.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:i].")] = "cpu",
    weights: Annotated[str, typer.Option(help="auto, ema or model.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Score a fitted model on held-out data: NLL and sample distances, as compare does.

    Without --data the run's own held-out split is used (the share fit kept aside). NLL is in
    bits/dim for discrete data (uniform dequantisation) and nats/dim otherwise; MMD uses a
    Gaussian kernel with the median-distance bandwidth of the scored data.

    Examples:

      probpath evaluate runs/gmm-moons

      probpath evaluate runs/ddpm --data checkerboard --metrics nll,swd --json
    """
    from probpath.compare import METRICS, DataSpace, evaluate_model, resolve_device, unfit_reason

    def prepare():
        chosen = [m.strip() for m in metrics.split(",") if m.strip()]
        bad = [m for m in chosen if m not in METRICS]
        if not chosen or bad:
            raise _BadInput(f"--metrics {metrics!r}: choose from {', '.join(METRICS)}")
        _positive(n, "--n", integer=True)
        if weights not in ("auto", "ema", "model"):
            raise _BadInput(f"--weights must be auto, ema or model, got {weights!r}")
        dev = resolve_device(device)
        loaded, record = _load_run(run_dir, dev, weights)
        if data is None:
            if record is None:
                raise _BadInput(f"{run_dir} has no run.json; pass --data")
            dataset = _load_data(record.data, record.n, record.seed)
            if record.holdout <= 0:
                raise _BadInput("the run kept no held-out data (--holdout 0); pass --data")
            _, test = dataset.split(record.holdout, seed=record.seed)
        else:
            test = _load_data(data, None, seed)
        if record is not None:
            space = record.space
            if tuple(test.event_shape) != space.event_shape:
                raise _BadInput(
                    f"the data has shape {test.event_shape} per sample but the model was fitted "
                    f"on {space.event_shape}"
                )
        else:
            from probpath.catalog import entry_for_class

            entry = entry_for_class(type(loaded).__name__)
            why = unfit_reason(entry, test)
            if why is not None:
                raise _BadInput(f"model {entry.name!r} {why}")
            space = DataSpace.for_entry(test, entry.data)
        if loaded.capabilities.conditional and test.y is None:
            raise _BadInput("this conditional model needs labelled data")
        return chosen, loaded, record, test, space

    chosen, loaded, record, test, space = _validate(prepare)

    def work():
        t0 = time.perf_counter()
        result = evaluate_model(loaded, space, test, metrics=chosen, n=n, seed=seed)
        result["seconds"] = time.perf_counter() - t0
        result["model"] = record.model if record else type(loaded).__name__
        if as_json:
            typer.echo(json.dumps(_json_safe(result), indent=2))
            return
        typer.echo(_evaluate_table(result, chosen))

    _run(work)


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def _evaluate_table(result: dict, chosen: list[str]) -> str:
    names = {
        "nll": "NLL",
        "mmd": "MMD² (Gaussian kernel)",
        "swd": "sliced Wasserstein-2",
        "energy": "energy distance",
        "fd": "Fréchet distance",
    }
    lines = ["| metric | value | note |", "|---|---|---|"]
    for m in chosen:
        if m == "nll":
            r = result["nll"]
            value = "—" if r["value"] is None else f"{r['value']:.4f} {r['unit']}"
            note = r["kind"] if r["value"] is not None else f"none — {r['note']}"
        else:
            value, note = f"{result[m]:.4g}", ""
            if m == "mmd":
                note = f"bandwidth {result['bandwidth']:.4g}, unbiased"
        lines.append(f"| {names[m]} | {value} | {note} |")
    head = f"{result['model']}: {result['n']} held-out points, {result['seconds']:.1f} s\n\n"
    return head + "\n".join(lines)


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------


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
) -> None:
    """Train every model on the same data under the same budget and compare them.

    Each model is trained on the same split (Trainer for neural models, fit for
    estimators), then sampled and scored on held-out data: NFE per sample, train time,
    sample time per 1,000, held-out NLL (exact / bound / none), MMD², sliced Wasserstein-2
    and energy distance. Writes OUT/table.md, table.csv, table.json and samples.png and
    prints the table; progress goes to stderr, one line per model. A model that fails gets
    a 'failed: ...' row and the others go on.

    Examples:

      probpath compare --quick

      probpath compare --models gaussian,gmm,realnvp,ddpm --data moons --time 30

      probpath compare --data digits --steps 3000 --out runs/digits --device cuda
    """
    from probpath.compare import resolve_device, run_compare, select_entries

    def prepare():
        _positive(steps, "--steps", integer=True)
        _positive(time_budget, "--time")
        _positive(n, "--n", integer=True)
        if n_eval is not None and n_eval < 2:
            raise _BadInput(f"--n-eval must be >= 2, got {n_eval}")
        _positive(n_nll, "--n-nll", integer=True)
        names = None
        if models is not None:
            names = [m.strip() for m in models.split(",") if m.strip()]
            if not names:
                raise _BadInput("--models is empty; give names such as --models gaussian,gmm")
        resolve_device(device)
        if out.exists() and not out.is_dir():
            raise _BadInput(f"--out {out} is a file; choose a directory")
        dataset = _load_data(data, n, seed)
        entries = select_entries(names, dataset)
        if not entries:
            raise _BadInput(f"no model in compare can take data of shape {dataset.event_shape}")
        return names, dataset

    names, dataset = _validate(prepare)

    def work():
        result = run_compare(
            names, dataset, steps=steps, time_budget=time_budget, quick=quick, out_dir=out,
            seed=seed, device=device, n_eval=n_eval, n_nll=n_nll,
        )  # fmt: skip
        typer.echo(result.markdown)
        typer.echo(f"wrote {', '.join(str(p) for p in result.files.values())}", err=True)

    _run(work)


def main() -> None:
    """Entry point of the ``probpath`` script and ``python -m probpath``."""
    app(prog_name="probpath")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
