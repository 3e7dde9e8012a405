"""``probpath sample``: draw samples from a run and save them as .npy or .png."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import typer

from probpath.cli.app import app
from probpath.cli.errors import BadInput
from probpath.cli.options import check_positive, check_seed, load_run

__all__ = ["sample"]


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
        int | None,
        typer.Option(
            "--class", "--label", help="Class label for conditional models (default: random)."
        ),
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(help="Classifier-free guidance weight w (conditional path models)."),
    ] = None,
    classifier: Annotated[
        Path | None,
        typer.Option(
            help="Classifier guidance: a run of 'probpath fit classifier --run RUN' (path "
            "models; guides towards --class)."
        ),
    ] = None,
    classifier_scale: Annotated[
        float, typer.Option(help="Scale s of the classifier's gradient (with --classifier).")
    ] = 1.0,
    trajectories: Annotated[
        bool,
        typer.Option(
            help="Path models on 2-D data: plot each sample's path from noise to data (.png)."
        ),
    ] = False,
    clip_x0: Annotated[
        bool | None,
        typer.Option(
            "--clip-x0/--no-clip-x0",
            help="Path models on bounded data (images): clamp every x0 prediction to the "
            "data range (diffusers' clip_sample); keeps ODE samplers of short-trained "
            "eps-models in range. Default: on for bounded data, as probpath.load does.",
        ),
    ] = None,
    max_params: Annotated[
        int | None,
        typer.Option(
            help="Raise the bound on the model's weights and on --n x sample size (tensor "
            "elements; default 1e8)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Draw samples from a fitted model and save them as .npy (array) or .png (plot).

    Samples come back in the data's own space and shape (a vector model fitted on images
    gives images). --sampler and --steps are passed to the model only when given.

    Examples:

      probpath sample runs/gmm-moons --n 2000 --out gmm.png

      probpath sample runs/ddpm --n 500 --sampler dpmpp_2m --steps 10 --out ddpm.npy

      probpath sample runs/ddpm-digits --sampler dpmpp_2m --steps 20 --clip-x0 --out d.png

      probpath sample runs/cfm --sampler unipc --steps 5 --grid optimized --out cfm.npy

      probpath sample runs/ddpm-digits --class 3 --classifier runs/clf-digits --out 3.png
    """
    import torch

    from probpath.compare import resolve_device
    from probpath.compare.runmodel import default_sample_options, is_path_model, model_range
    from probpath.core.limits import DEFAULT_MAX_PARAMS, MAX_SAMPLER_STEPS, check_elements

    bound = max_params or DEFAULT_MAX_PARAMS

    def prepare():
        check_positive(n, "--n", integer=True)
        check_positive(steps, "--steps", integer=True)
        check_positive(max_params, "--max-params", integer=True)
        check_seed(seed)
        if steps is not None and steps > MAX_SAMPLER_STEPS:
            raise BadInput(f"--steps must be at most {MAX_SAMPLER_STEPS}, got {steps}")
        if out.suffix.lower() not in (".npy", ".png"):
            raise BadInput(f"--out {out} must end in .npy (array) or .png (plot)")
        if out.exists() and out.is_dir():
            raise BadInput(f"--out {out} is a directory; give a file name ending in .npy/.png")
        if weights not in ("auto", "ema", "model"):
            raise BadInput(f"--weights must be auto, ema or model, got {weights!r}")
        dev = resolve_device(device)
        loaded, record = load_run(run_dir, dev, weights, bound)
        event = record.space.event_shape if record else getattr(loaded, "event_shape", ())
        check_elements((n, *event), bound, "--n x sample shape", "use a smaller --n")
        if sampler is not None and is_path_model(loaded):
            from probpath.sampling import SAMPLER_SPECS

            if sampler not in SAMPLER_SPECS:
                names = ", ".join(SAMPLER_SPECS)
                raise BadInput(f"--sampler {sampler!r} is unknown; choose from {names}")
        from probpath.core.model import is_conditional

        cond = None
        if guidance is not None and not (is_conditional(loaded) and is_path_model(loaded)):
            raise BadInput("--guidance needs a conditional path model (fit --conditional)")
        if classifier is not None:
            return loaded, record, _classifier_labels(loaded, dev, seed)
        if is_conditional(loaded):
            classes = record.num_classes if record is not None else 0
            if label is not None and classes and not 0 <= label < classes:
                raise BadInput(f"--label must be in [0, {classes - 1}], got {label}")
            g = torch.Generator().manual_seed(seed + 1)
            if label is not None:
                cond = torch.full((n,), label, dtype=torch.long)
            elif classes:
                cond = torch.randint(0, classes, (n,), generator=g)
            else:
                raise BadInput("this conditional model needs --label (the run has no record)")
        elif label is not None:
            raise BadInput("--label is only for conditional models")
        return loaded, record, cond

    def _classifier_labels(loaded, dev, seed):
        nonlocal clf
        from probpath.cli.classifier import load_classifier_run

        if not is_path_model(loaded) or guidance is not None:
            raise BadInput("--classifier needs a path model (ddpm, cfm, ...) and no --guidance")
        import math

        if not math.isfinite(classifier_scale):
            raise BadInput(f"--classifier-scale must be a finite number, got {classifier_scale}")
        clf = load_classifier_run(classifier, loaded, dev)
        if label is not None and not 0 <= label < clf.num_classes:
            raise BadInput(f"--class must be in [0, {clf.num_classes - 1}], got {label}")
        if label is not None:
            return torch.full((n,), label, dtype=torch.long)
        return torch.randint(
            0, clf.num_classes, (n,), generator=torch.Generator().manual_seed(seed + 1)
        )

    clf = None
    loaded, record, cond = prepare()
    path: list = []

    def check_trajectories():
        event = tuple(record.space.event_shape) if record is not None else None
        if not is_path_model(loaded) or event != (2,) or out.suffix.lower() != ".png":
            raise BadInput(
                "--trajectories needs a path model (ddpm, cfm, ...) fitted on 2-D data and "
                "an --out ending in .png"
            )

    if trajectories:
        check_trajectories()

    def clip_range():
        space = record.space if record is not None else None
        if not is_path_model(loaded) or space is None or space.value_range is None:
            raise BadInput(
                "--clip-x0 needs a path model (ddpm, cfm, ...) fitted on bounded data "
                "(images, counts); the data range of this run is unknown"
            )
        return model_range(space)

    clip = None
    if clip_x0:
        clip = clip_range()
    elif clip_x0 is None and record is not None:  # the default probpath.load uses too
        clip = default_sample_options(loaded, record.space).get("clip_x0")

    def grid_times():
        if not is_path_model(loaded):
            raise BadInput("--grid needs a path model (ddpm, cfm, ...)")
        if grid != "optimized":
            return grid
        from probpath.sampling.optimize import (
            CHECK_DRAWS,
            FIT_DRAWS,
            load_grid,
            optimize_grid,
            save_grid,
        )

        name, k = sampler or loaded.default_sampler, steps or loaded.default_steps
        ts = load_grid(run_dir, name, k)
        if ts is None:
            fit = optimize_grid(
                loaded.field,
                k,
                loaded.event_shape,
                sampler=name,
                dtype=loaded.dtype,
                sigma_data=loaded.data_std,
            )
            save_grid(run_dir, fit)
            typer.echo(
                f"optimized {name} grid, {k} steps: RMS error {fit.initial_error:.3g} -> "
                f"{fit.error:.3g} vs a fine solve on {CHECK_DRAWS:,} check draws; cost "
                f"{fit.nfe} NFE on batches of {FIT_DRAWS:,} (fit) and {CHECK_DRAWS:,} (check) "
                "draws, "
                f"{fit.seconds:.1f} s (saved in {run_dir / 'grids.json'})",
                err=True,
            )
            ts = fit.ts
        return ts

    grid_arg = grid_times() if grid is not None else None

    def keep(info):  # the sampler's callback: the state after every step
        path.append(info["x"].detach().double().cpu())

    def draw():
        from probpath.compare import draw_samples
        from probpath.maps.base import MapModel
        from probpath.training.progress import phase

        n_steps = steps
        if isinstance(loaded, MapModel):  # few-step maps take --steps, with their own rule
            if sampler is not None:
                raise BadInput(
                    f"{type(loaded).__name__} is a few-step map with its own update rule: it "
                    "takes --steps but no --sampler; leave --sampler out"
                )
            try:
                n_steps = loaded.steps_option(steps).get("steps")
            except ValueError as e:
                raise BadInput(f"{e} (--steps)") from None
        elif (sampler is not None or steps is not None) and not is_path_model(loaded):
            raise BadInput(
                f"{type(loaded).__name__} samples in one pass and takes no --sampler/--steps "
                "options (only path models and few-step maps do: ddpm, cfm, consistency, "
                "...); leave them out"
            )
        extra = {"callback": keep} if trajectories else {}
        if guidance is not None:
            extra["guidance"] = guidance
        if clf is not None:
            extra["guidance_options"] = {"classifier": clf, "classifier_scale": classifier_scale}
        if clip is not None:
            extra["clip_x0"] = clip
        if grid_arg is not None:
            extra["grid"] = grid_arg
        mode = "off" if quiet else "auto"
        with phase(f"sampling {n}", mode=mode, announce_after=2.0):
            x, seconds = draw_samples(
                loaded, n, cond=cond, seed=seed, sampler=sampler, steps=n_steps, **extra
            )
        return x, seconds

    x, seconds = draw()

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

    save()


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
