"""``probpath fit classifier``: a noise-aware classifier for classifier guidance of a path run.

``probpath fit classifier --run RUN --out CLF`` trains
:class:`~probpath.sampling.guidance.NoisyClassifier` by cross-entropy on ``x_t`` of RUN's
path (Dhariwal & Nichol 2021, §4), on RUN's own training split of its labelled data in the
model's space, and saves it as a classifier run (``classifier.safetensors`` and
``classifier.json``). ``probpath sample RUN --class C --classifier CLF --classifier-scale S``
then guides RUN's (unconditional) field with ``S grad_x log p(C | x_t)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from probpath.cli.errors import BadInput
from probpath.cli.options import (
    check_positive,
    check_seed,
    load_data,
    load_run,
    merge_options,
    parse_extra_args,
    parse_set_options,
)

__all__ = ["fit_classifier_run", "load_classifier_run"]

_OPTIONS = ("run", "hidden", "t_min")


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to write over anything but an earlier classifier run (and only with
    ``--overwrite``)."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; choose a directory name")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise BadInput(f"--out {out} is not empty; choose another --out or pass --overwrite")
        if not (out / "classifier.json").is_file():
            raise BadInput(f"--out {out} is not a classifier run; choose another --out")


def fit_classifier_run(
    args: list[str],
    sets: list[str],
    *,
    out: Path | None,
    steps: int | None,
    seed: int,
    batch_size: int | None,
    lr: float | None,
    device: str,
    overwrite: bool,
    quiet: bool,
) -> None:
    """``probpath fit classifier --run RUN [--hidden [128,128]] [--t-min T]`` (see the module
    docstring); the other arguments are ``fit``'s own options."""
    import torch

    from probpath.compare import resolve_device
    from probpath.compare.runmodel import is_path_model
    from probpath.sampling.guidance import fit_classifier, save_classifier

    try:
        kwargs: dict[str, Any] = merge_options(parse_extra_args(args), parse_set_options(sets))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    unknown = sorted(set(kwargs) - set(_OPTIONS))
    if unknown or "run" not in kwargs:
        raise BadInput(
            f"fit classifier takes --run RUN (a path model's run directory) and optionally "
            f"--hidden [128,128] and --t-min T; got {sorted(kwargs)}"
        )
    check_positive(steps, "--steps", integer=True)
    check_positive(batch_size, "--batch-size", integer=True)
    check_positive(lr, "--lr")
    check_seed(seed)
    run = Path(str(kwargs["run"]))
    target = Path(out) if out is not None else Path("runs") / f"classifier-{run.name}"
    _check_out(target, overwrite)
    dev = resolve_device(device)
    model, record = load_run(run, dev, "auto")
    if record is None or not is_path_model(model):
        raise BadInput(f"--run {run} must be a path model's run (ddpm, cfm, ...) from fit")
    dataset = load_data(record.data, record.n, record.seed)
    if dataset.num_classes < 2:
        raise BadInput(f"the data of {run} ({record.data!r}) has no labels to classify")
    train = dataset.split(record.holdout, seed=record.seed)[0] if record.holdout else dataset
    x = record.space.model_dataset(train).x.to(dev, torch.float32)
    hidden = kwargs.get("hidden", [128, 128])
    if not isinstance(hidden, list) or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise BadInput(f"--hidden must be a list of positive widths, e.g. [128,128]; got {hidden}")
    t_min = kwargs.get("t_min")
    if t_min is not None and not (isinstance(t_min, int | float) and 0.0 <= t_min < 1.0):
        raise BadInput(f"--t-min must be a number in [0, 1), got {t_min!r}")
    steps = steps or 2000
    if not quiet:
        typer.echo(f"training a noise-aware classifier on {len(x)} x_t of {run} ...", err=True)
    net = fit_classifier(
        model.field.path,
        x,
        train.y.to(dev),
        num_classes=dataset.num_classes,
        steps=steps,
        batch_size=batch_size or 256,
        lr=lr or 2e-3,
        hidden=hidden,
        t_min=t_min,
        generator=torch.Generator().manual_seed(seed),
    )
    with torch.no_grad():  # accuracy on the (nearly) clean training data, as a sanity line
        t0 = torch.full((len(x),), model.field.path.t_min, device=dev)
        acc = float((net(x, t0).argmax(1).cpu() == train.y.cpu()).float().mean())
    save_classifier(
        net,
        target,
        {"run": str(run.resolve()), "model": record.model, "data": record.data, "steps": steps},
    )
    typer.echo(f"classifier ({steps} steps, training accuracy at t_min {acc:.3f}) -> {target}")


def load_classifier_run(directory: Path, model, device):
    """The classifier of ``directory`` for guiding ``model`` (its input size must match)."""
    from probpath.core.serialization import CheckpointError
    from probpath.sampling.guidance import load_classifier

    try:
        net = load_classifier(directory, device)
    except CheckpointError as exc:
        raise BadInput(str(exc)) from None
    numel = 1
    for s in model.event_shape:
        numel *= int(s)
    if net.dim != numel:
        raise BadInput(
            f"--classifier {directory} takes inputs of size {net.dim}; the model's are {numel} "
            "(fit the classifier on this run: probpath fit classifier --run RUN)"
        )
    return net
