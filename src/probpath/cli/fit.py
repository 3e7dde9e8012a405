"""``probpath fit``: train or fit one model and save it as a run directory."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from probpath.cli.app import EXTRA_ARGS, app
from probpath.cli.errors import BadInput
from probpath.cli.options import check_positive, check_seed, load_data

__all__ = ["fit"]


@app.command(context_settings=EXTRA_ARGS)
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
    conditional: Annotated[
        bool,
        typer.Option(
            help="Path models: learn p(x | label) from the data's labels (num_classes = the "
            "data's classes, label dropout p_uncond for classifier-free guidance)."
        ),
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue an interrupted or finished run from its last checkpoint (give the "
            "same model, data and options; --steps is the new total)."
        ),
    ] = None,
    resume_anyway: Annotated[
        bool,
        typer.Option(
            help="With --resume: continue although the data or the options differ from the "
            "run's (e.g. fine-tuning on new data); the model must be the same."
        ),
    ] = False,
    max_params: Annotated[
        int | None,
        typer.Option(help="Raise the bound on a model's weights (tensor elements; default 1e8)."),
    ] = None,
    ckpt_every: Annotated[
        str,
        typer.Option(
            help="Checkpoint every N seconds ('60', '60s'), every N steps ('500steps') or "
            "'off'. Ctrl-C / SIGTERM always checkpoint and print the --resume command."
        ),
    ] = "60s",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
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

      probpath fit cfm --data gmm --conditional --steps 2000 --out runs/cfm-gmm

      probpath fit classifier --run runs/ddpm-digits --steps 2000 --out runs/clf-digits

      torchrun --nproc_per_node=2 -m probpath fit cfm --data moons --steps 5000
    """
    from probpath.catalog import build_model, get_entry
    from probpath.cli.options import merge_options, parse_extra_args, parse_set_options
    from probpath.cli.rundir import check_output_dir, check_resume
    from probpath.compare import DataSpace, resolve_device, unfit_reason
    from probpath.core.limits import DEFAULT_MAX_PARAMS, ResourceLimitError, build_bounded
    from probpath.runs import data_fingerprint
    from probpath.training.distributed import is_main_process
    from probpath.training.interrupt import parse_ckpt_every
    from probpath.training.seeding import seed_everything

    if model == "classifier":  # probpath fit classifier --run RUN: see cli/classifier.py
        from probpath.cli.classifier import fit_classifier_run

        return fit_classifier_run(
            ctx.args, set_ or [], out=out, steps=steps, seed=seed, batch_size=batch_size,
            lr=lr, device=device, overwrite=overwrite, quiet=quiet,
        )  # fmt: skip
    entry = get_entry(model)
    kwargs = merge_options(parse_extra_args(ctx.args), parse_set_options(set_ or []))
    every_steps, every_seconds = parse_ckpt_every(ckpt_every)
    trainer_options = {
        "ckpt_every": every_steps,
        "ckpt_seconds": every_seconds,
        "progress": "off" if quiet else "auto",
        "progress_label": f"train {entry.name}",
    }
    check_positive(steps, "--steps", integer=True)
    check_positive(time_budget, "--time")
    check_positive(batch_size, "--batch-size", integer=True)
    check_positive(lr, "--lr")
    check_positive(n, "--n", integer=True)
    check_positive(max_params, "--max-params", integer=True)
    check_seed(seed)
    if not 0.0 <= holdout < 1.0:
        raise BadInput(f"--holdout must be in [0, 1), got {holdout}")
    caps = entry.cls.capabilities
    if resume_anyway and resume is None:
        raise BadInput("--resume-anyway goes with --resume RUN; leave it out for a new run")
    if resume is not None and caps.estimator:
        raise BadInput(
            f"--resume: {entry.name!r} is an estimator, refitted rather than resumed; start a "
            "new run with --out instead"
        )
    if resume is not None and out is not None and Path(out).resolve() != _final(resume).resolve():
        raise BadInput(
            f"--resume continues {resume} in place (it becomes {_final(resume)}); leave out "
            f"--out {out}, or copy the run there first and resume the copy"
        )
    if out is not None and is_main_process():  # before any data is read
        check_output_dir(Path(out), overwrite)
    dev = resolve_device(device)
    dataset = load_data(data, n, seed)
    why = unfit_reason(entry, dataset)
    if why is not None:
        raise BadInput(f"model {entry.name!r} {why}; pick another model or data set")
    if conditional and not (caps.accepts_labels and dataset.num_classes > 0):
        raise BadInput(
            "--conditional needs a model that takes labels (ddpm, cfm, vae, ...) and labelled "
            f"data; {entry.name!r} on {data!r} has "
            f"{'labels' if dataset.num_classes else 'no labels'}"
        )
    train = dataset
    if holdout > 0:
        train, _ = dataset.split(holdout, seed=seed)
    space = DataSpace.for_entry(dataset, entry.data)
    seed_everything(seed)  # the model is built under the seed (the Trainer re-seeds too)
    try:
        built = build_bounded(
            lambda: build_model(
                entry,
                space.model_event_shape,
                dataset.num_classes if caps.conditional or conditional else None,
                quick=quick,
                **kwargs,
            ),
            max_params or DEFAULT_MAX_PARAMS,
            f"model {entry.name!r}",
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, BadInput | ResourceLimitError):
            raise
        raise BadInput(f"invalid options for model {entry.name!r}: {exc}") from None
    if caps.estimator:
        _check_estimator_options(entry.name, built, space.model_dataset(train).x)
    fingerprint = data_fingerprint(train.x, train.y)
    if resume is not None:
        options = {"options": kwargs, "quick": quick}
        target = check_resume(
            Path(resume), entry.name, entry.cls.__name__, options, fingerprint,
            anyway=resume_anyway,
        )  # fmt: skip
    else:
        target = Path(out or Path("runs") / f"{entry.name}-{dataset.name}")
        if out is None and is_main_process():
            check_output_dir(target, overwrite)

    _fit_run(
        entry, kwargs, dev, dataset, train, space, built, target,
        data=data, n=n, seed=seed, holdout=holdout, steps=steps, time_budget=time_budget,
        batch_size=batch_size, lr=lr, quick=quick, resume=resume, fingerprint=fingerprint,
        trainer_options=trainer_options,
    )  # fmt: skip


def _check_estimator_options(name: str, built, x) -> None:
    """Run an estimator's own option checks (``n_components >= 1``, ``tol``, ...) on a copy,
    before any fitting: they otherwise run inside ``fit``, after work has started."""
    import copy

    probe = copy.deepcopy(built)
    try:
        if hasattr(probe, "_check_settings"):  # GaussianMLE / GaussianScoreMatching
            probe._check_settings()
        if hasattr(probe, "_check_loop_settings"):
            probe._check_loop_settings()
        if hasattr(probe, "_check_parameters"):
            probe._check_parameters(x.double())
    except (TypeError, ValueError) as exc:
        raise BadInput(f"invalid options for model {name!r}: {exc}") from None


def _final(resume: Path) -> Path:
    """The run directory a ``--resume`` directory publishes to (``.NAME.partial`` -> NAME)."""
    resume = Path(resume)
    if resume.name.startswith(".") and resume.name.endswith(".partial"):
        return resume.parent / resume.name[1 : -len(".partial")]
    return resume


def _fit_run(
    entry, kwargs, dev, dataset, train, space, built, target: Path, *, data, n, seed, holdout,
    steps, time_budget, batch_size, lr, quick, resume=None, fingerprint=None,
    trainer_options=None,
) -> None:  # fmt: skip
    import torch

    from probpath.compare import train_model
    from probpath.core.serialization import remove_stale_temp_files
    from probpath.runs import RunRecord, publish, staging_path, write_run_record
    from probpath.training.checkpoint import has_checkpoint
    from probpath.training.distributed import is_main_process
    from probpath.training.seeding import environment

    main_rank = is_main_process()
    staging = Path(resume) if resume is not None else staging_path(target)
    source = str(Path(data).resolve()) if Path(data).exists() else data
    record = RunRecord(
        model=entry.name, data=source, space=space, n=n, seed=seed, holdout=holdout,
        num_classes=dataset.num_classes, fit={"options": kwargs, "quick": quick},
        fingerprint=fingerprint,
    )  # fmt: skip
    created = False
    if main_rank:
        created = not staging.exists()
        remove_stale_temp_files(staging)
        if resume is None:  # the record first: an interrupted run can be checked on --resume
            write_run_record(staging, record)
    torch.manual_seed(seed)
    try:
        outcome = train_model(
            built, train, space=space, steps=steps, time_budget=time_budget, seed=seed,
            device=dev, batch_size=batch_size, lr=lr, out_dir=staging, quick=quick,
            resume=resume, trainer_options=trainer_options,
        )  # fmt: skip
        if not main_rank:
            return
        if not (staging / "config.json").is_file():
            built.save(staging)
        record.fit = {
            "seconds": outcome.seconds,
            "steps": outcome.steps,
            "final_loss": outcome.final_loss,
            "used_ema": outcome.used_ema,
            "device": str(dev),
            "options": kwargs,
            "quick": quick,
            "environment": environment(dev),
        }
        write_run_record(staging, record)
        if staging != target:
            publish(staging, target)
    except BaseException:
        if main_rank and staging.exists():
            if has_checkpoint(staging):  # keep the checkpoints so the run can continue
                from probpath.training.interrupt import resume_command

                typer.echo(
                    f"checkpoint kept in {staging}; continue with:\n  "
                    f"{resume_command(sys.argv, staging)}",
                    err=True,
                )
            elif created:  # we created it in this call and it holds no checkpoint: ours
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
