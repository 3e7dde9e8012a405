"""Guidance (survey §6, Tables 2-3): exact-oracle errors, then class-conditional digits.

Part 1 — exact. A class-conditional Gaussian mixture (``ClassConditionalOracle``; ``--dim``
dimensions, 6 components in 3 classes, VP path). At 400 points ``x_t ~ p_t`` for each of 9
times ``t`` in [0.05, 0.95] we report the largest error of

* classifier-free guidance (weight ``w``, formed in each native prediction kind: eps, x0, v,
  velocity) against the closed-form score ``(1 + w) grad log p_t(x|c) - w grad log p_t(x)``
  (autograd of the exact log-densities), relative to its RMS;
* classifier guidance with the exact class posterior against the exact conditional score;
* classifier guidance with a *learned* noise-aware classifier (``fit_classifier``, 2000
  steps) against the exact conditional score: the modelling error of the classifier route.

Part 2 — digits. A class-conditional DDPM (catalog ``ddpm`` with ``num_classes=10``, label
dropout 0.1) is trained for ``--train-steps`` steps (Trainer, batch 256, EMA); for each
guidance weight ``w`` in ``--weights`` we draw ``--n-per-class`` samples of every class with
the model's default sampler (ancestral, 1000 steps; guided: 1000×2 network passes) and report
the class accuracy of the samples under the digits classifier of ``metrics.features`` (fitted
on the training split; its accuracy on the held-out digits is printed too), the Fréchet
distance in its features to the held-out digits (overall, and the mean of the per-class FDs),
and write ``benchmarks/figures/guidance_digits.png`` (FD and accuracy vs ``w``).

Part 3 (``--part label-use``) — why a conditional DDPM scores lower than a CFM at ``w = 0``.
Each model of ``--models`` is trained as in part 2; then (a) its *implicit classifier* on 300
held-out digits noised to ``x_t``: the label ``c`` whose data prediction ``x0_hat(x_t, t, c)``
is closest to the true digit (Li et al. 2023, "Your diffusion model is secretly a zero-shot
classifier", in x0 units so eps- and velocity-models compare), per ``t`` with the path's SNR:
how much the network uses its label; (b) the class accuracy of 30 unguided samples per class
with the default sampler, without and with ``clip_x0 = (-1, 1)``.

Run:  .venv/bin/python benchmarks/bench_guidance.py [--part exact|digits|both|label-use]
      [--train-steps 4000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from probpath.paths.affine import AffinePath
from probpath.paths.field import FunctionField
from probpath.paths.oracle import ClassConditionalOracle
from probpath.sampling.guidance import ClassifierFreeGuidance, ClassifierGuidance, fit_classifier

DT = torch.float64
KINDS = ("eps", "x0", "v", "velocity")


def make_oracle(dim: int, seed: int) -> ClassConditionalOracle:
    g = torch.Generator().manual_seed(seed)
    mu = 2.0 * torch.randn(6, dim, generator=g, dtype=DT)
    lo = 0.4 * torch.randn(6, dim, dim, generator=g, dtype=DT) / dim**0.5
    cov = lo @ lo.transpose(1, 2) + 0.15 * torch.eye(dim, dtype=DT)
    return ClassConditionalOracle(
        torch.full((6,), 1 / 6, dtype=DT), mu, cov, [0, 0, 1, 1, 2, 2], path=AffinePath("vp")
    )


def _grad_log_p(oracle, x, t, cond):
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(oracle.log_prob(x, t, cond).sum(), x)[0]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.pow(2).mean().sqrt())


def run_exact(dim: int, seed: int, weights) -> None:
    oracle = make_oracle(dim, seed)
    g = torch.Generator().manual_seed(seed + 1)
    k = torch.multinomial(oracle.weights, 4000, replacement=True, generator=g)
    labels = oracle.classes[k]  # labelled training draws for the classifier
    x0 = oracle.means[k] + torch.einsum(
        "nij,nj->ni",
        torch.linalg.cholesky(oracle.covs)[k],
        torch.randn(4000, dim, generator=g, dtype=DT),
    )
    clf = fit_classifier(oracle.path, x0.float(), labels, steps=2000, generator=g).double()
    print(f"\n## Exact guidance errors ({dim}-D, 6 components / 3 classes, VP path, seed {seed})\n")
    print(
        "| t | "
        + " | ".join(f"CFG w={w} (max over kinds)" for w in weights)
        + " | classifier (exact posterior) | classifier (learned) |"
    )
    print("|---" * (3 + len(weights)) + "|")
    for t in torch.linspace(0.05, 0.95, 9, dtype=DT).tolist():
        x = oracle.sample(400, t=t, generator=g)
        cond = torch.arange(400) % 3
        row = []
        s_c, s_u = _grad_log_p(oracle, x, t, cond), _grad_log_p(oracle, x, t, None)
        for w in weights:
            want = (1 + w) * s_c - w * s_u
            errs = []
            for kind in KINDS:
                field = FunctionField(
                    lambda x, t, c=None, kind=kind: oracle.predict(x, t, as_=kind, cond=c),
                    oracle.path,
                    kind,
                )
                got = ClassifierFreeGuidance(field, w, 3).predict(x, t, "score", cond)
                errs.append(rel_err(got, want))
            row.append(f"{max(errs):.1e}")
        exact = ClassifierGuidance(oracle, oracle.class_log_posterior).predict(x, t, "score", cond)
        learned = ClassifierGuidance(oracle, clf).predict(x, t, "score", cond)
        row += [f"{rel_err(exact, s_c):.1e}", f"{rel_err(learned, s_c):.2f}"]
        print(f"| {t:.2f} | " + " | ".join(row) + " |")


def save_rows(rows: list[torch.Tensor], path: Path, labels: list[str], title: str) -> None:
    """One row of 8x8 digits (pixels 0..16, ``(k, 64)``) per entry of ``rows``, labelled."""
    from matplotlib.figure import Figure

    from probpath.plotting import image_grid, save_figure

    k = len(rows[0])
    tiles = image_grid(torch.cat(rows).reshape(-1, 1, 8, 8), value_range=(0.0, 16.0), ncols=k)
    fig = Figure(figsize=(0.45 * k + 1.2, 0.45 * len(rows) + 0.4), layout="constrained")
    ax = fig.subplots()
    ax.imshow(tiles, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks([4.5 + 9 * i for i in range(len(rows))], labels)
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def run_digits(
    train_steps: int,
    weights,
    n_per_class: int,
    seed: int,
    figure: Path,
    name: str = "ddpm",
    grid: tuple[float, Path] | None = None,
) -> None:
    from probpath.catalog import build_model
    from probpath.data import Dataset, load_dataset
    from probpath.metrics import feature_frechet_distance, fit_feature_extractor, quantize
    from probpath.training import TrainConfig, Trainer

    data = load_dataset("digits")
    train, test = data.split(0.2, seed=seed)
    flat = train.x.reshape(len(train), -1).float()
    extractor = fit_feature_extractor(flat, train.y, seed=seed, n_levels=17, value_range=(0, 16))
    test_flat = test.x.reshape(len(test), -1).float()
    with torch.no_grad():
        test_acc = float((extractor(test_flat).argmax(1) == test.y).float().mean())
    torch.manual_seed(seed)
    model = build_model(name, (64,), 10)
    cfg = TrainConfig(steps=train_steps, batch_size=256, seed=seed, progress="off")
    t0 = time.perf_counter()
    ds = Dataset(flat / 8.0 - 1.0, y=train.y, name="digits", num_classes=10)
    res = Trainer(cfg).fit(model, ds)
    model = (res.ema_model or res.model).eval()
    print(
        f"\n## Class-conditional digits ({name}, {res.steps} steps in "
        f"{time.perf_counter() - t0:.0f} s; classifier accuracy on held-out digits "
        f"{test_acc:.3f}; {n_per_class} samples per class; seed {seed})\n"
    )
    print("| w | NFE | class accuracy | FD features (all) | mean per-class FD | s |")
    print("|---|---|---|---|---|---|")
    cond = torch.arange(10).repeat_interleave(n_per_class)
    rows = []
    for w in weights:
        g = torch.Generator().manual_seed(seed + 7)
        t1 = time.perf_counter()
        x = model.sample(len(cond), cond=cond, generator=g, guidance=w if w else None)
        sec = time.perf_counter() - t1
        pix = quantize((x.float() + 1.0) * 8.0, 17, (0.0, 16.0))
        with torch.no_grad():
            acc = float((extractor(pix).argmax(1) == cond).float().mean())
        fd = feature_frechet_distance(pix, test_flat, extractor)
        per = [
            feature_frechet_distance(pix[cond == c], test_flat[test.y == c], extractor)
            for c in range(10)
        ]
        rows.append((w, acc, fd, sum(per) / 10))
        if grid is not None and w == grid[0]:  # one row per class, the first 10 samples
            per_class = [pix[cond == c][:10] for c in range(10)]
            save_rows(
                per_class,
                grid[1],
                [str(c) for c in range(10)],
                f"{name}, class-conditional, guidance w = {w:g} (row = class)",
            )
        print(
            f"| {w} | {model.sampling_nfe_text} | {acc:.3f} | {fd:.2f} | {sum(per) / 10:.2f} | "
            f"{sec:.0f} |"
        )
    from matplotlib.figure import Figure

    from probpath.plotting import save_figure

    fig = Figure(figsize=(7.0, 3.0), layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    ws = [r[0] for r in rows]
    a1.plot(ws, [r[2] for r in rows], "o-", label="all classes")
    a1.plot(ws, [r[3] for r in rows], "s--", label="mean per class")
    a1.set(xlabel="guidance weight w", ylabel="FD (classifier features)", title="FD vs w")
    a1.legend(fontsize=8)
    a2.plot(ws, [r[1] for r in rows], "o-")
    a2.set(xlabel="guidance weight w", ylabel="class accuracy", title="accuracy vs w")
    save_figure(fig, figure)
    print(f"\nfigure -> {figure}")


def run_label_use(train_steps: int, names: list[str], seed: int) -> None:
    from probpath.catalog import build_model
    from probpath.data import Dataset, load_dataset
    from probpath.metrics import fit_feature_extractor, quantize
    from probpath.training import TrainConfig, Trainer

    data = load_dataset("digits")
    train, test = data.split(0.2, seed=seed)
    flat = train.x.reshape(len(train), -1).float()
    extractor = fit_feature_extractor(flat, train.y, seed=seed, n_levels=17, value_range=(0, 16))
    tx, ty = test.x.reshape(len(test), -1).float()[:300] / 8.0 - 1.0, test.y[:300]
    times = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
    print(f"\n## Label use after {train_steps} steps (seed {seed})\n")
    print("| model | " + " | ".join(f"t={t}" for t in times) + " | acc w=0 | clipped |")
    print("|---|" + "---|" * (len(times) + 2))
    for name in names:
        torch.manual_seed(seed)
        model = build_model(name, (64,), 10)
        ds = Dataset(flat / 8.0 - 1.0, y=train.y, name="digits", num_classes=10)
        cfg = TrainConfig(steps=train_steps, batch_size=256, seed=seed, progress="off")
        model = Trainer(cfg).fit(model, ds)
        model = (model.ema_model or model.model).eval()
        path, g, cells = model.field.path, torch.Generator().manual_seed(1), []
        with torch.no_grad():
            for t in times:
                tt = torch.full((len(tx),), t)
                x_t = path.sample(tx, tt, eps=torch.randn(tx.shape, generator=g)).x_t
                err = [
                    (model.field.x0_eps(x_t, tt, torch.full_like(ty, c))[0] - tx).pow(2).sum(1)
                    for c in range(10)
                ]
                acc = float((torch.stack(err, 1).argmin(1) == ty).float().mean())
                v = path(torch.tensor([t]))
                cells.append(f"{acc:.2f} (snr {float((v.alpha / v.sigma) ** 2):.2g})")
            cond = torch.arange(10).repeat_interleave(30)
            for clip in (None, (-1.0, 1.0)):
                gen = torch.Generator().manual_seed(7)
                x = model.sample(len(cond), cond=cond, generator=gen, clip_x0=clip)
                pix = quantize((x.float() + 1.0) * 8.0, 17, (0.0, 16.0))
                cells.append(f"{float((extractor(pix).argmax(1) == cond).float().mean()):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", default="both", choices=("exact", "digits", "both", "label-use"))
    p.add_argument("--models", default="ddpm,cfm", help="label-use: catalog path models")
    p.add_argument("--dim", type=int, default=2)
    p.add_argument("--weights", default="0,0.5,1,2,4")
    p.add_argument("--train-steps", type=int, default=4000)
    p.add_argument("--n-per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="ddpm", help="a path model of the catalog (ddpm, cfm, ...)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--figure", default=str(Path(__file__).parent / "figures" / "guidance_digits.png")
    )
    p.add_argument(
        "--grid",
        default=None,
        help="W:PATH: also save the samples at guidance weight W as a grid, one row per class",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    weights = [float(w) for w in args.weights.split(",")]
    if args.part == "label-use":
        run_label_use(args.train_steps, args.models.split(","), args.seed)
    if args.part in ("exact", "both"):
        run_exact(args.dim, args.seed, weights)
    if args.part in ("digits", "both"):
        grid = None
        if args.grid:
            w_text, path = args.grid.split(":", 1)
            grid = (float(w_text), Path(path))
        run_digits(
            args.train_steps,
            weights,
            args.n_per_class,
            args.seed,
            Path(args.figure),
            args.model,
            grid,
        )


if __name__ == "__main__":
    main()
