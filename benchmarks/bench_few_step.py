"""Few-step generators (issue 14 §3): 1-4 NFE models against their teachers at 10-20 NFE.

Protocol of ``bench_quality.py`` (its metric functions are reused): digits on the 17 grey
levels scaled to [-1, 1], samples snapped back to the pixel grid and judged against the
held-out split by SW2, MMD, energy distance, the Fréchet distance (FD) and precision / recall
in a digits classifier's features, next to the single-Gaussian baseline; and one 2-D toy
(moons) by SW2 next to its two-sample noise floor.

Budgets are CPU seconds of the process (fair on a shared machine; one thread): every teacher
trains ``--teacher-seconds`` once and is shared by its students; every student
``--seconds`` more (its total is the sum, reported in the ``budget`` column). Teachers:
``cfm`` (Heun, 10 steps) and ``ddpm-v`` (DPM-Solver++ 2M, 10 and 20 steps). Students:
one reflow round of the cfm teacher (2-rectified flow, Euler @1/@2/@10; half the student
budget, in steps at the teacher's rate) and the 1-step distillation of its ODE map (the other
half) @1, consistency distillation of the cfm teacher @1/@2 (``consistency-init``: its network
read as a velocity and started from the teacher's weights), consistency training @1/@2,
consistency-FM @2, MeanFlow @1, shortcut @1/@4 (these four train from data alone: budget =
``--seconds``), progressive distillation of the ddpm-v teacher 16 -> 8 -> 4 DDIM steps in two
time-budgeted rounds @4. Goals: every 1-2 NFE model beats the Gaussian on every metric; the
best 1-NFE FD within 1.5x of its teacher's at 10 steps. The FD-vs-NFE curves go to
``benchmarks/figures/few_step_fd_vs_nfe.png``.

Run:  .venv/bin/python benchmarks/bench_few_step.py --seconds 75 --teacher-seconds 150 \
          [--datasets digits,moons] [--teachers cfm --students consistency --curves A.json]
      .venv/bin/python benchmarks/bench_few_step.py --merge A.json,B.json   (the figure)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from bench_quality import GRID, _sample, _sw2, digits_metrics
from probpath.catalog import build_model
from probpath.core.model import draw
from probpath.data import Dataset, load_dataset, make_toy
from probpath.metrics import (
    fit_feature_extractor,
)
from probpath.metrics.floor import noise_floor
from probpath.training import TrainConfig, Trainer
from probpath.training import trainer as trainer_module

__all__ = ["main"]

TEACHERS = ("cfm", "ddpm-v")

FIGURE = Path(__file__).parent / "figures" / "few_step_fd_vs_nfe.png"


class _CpuClock:
    """``time`` with ``perf_counter`` = the process's CPU time: the Trainer's time budget then
    counts CPU seconds, which stay fair while other jobs share the machine (one thread)."""

    perf_counter = staticmethod(time.process_time)

    def __getattr__(self, name):
        return getattr(time, name)


def fit(model, data, seconds: float, seed: int, ema: bool = True):
    """The Trainer for ``seconds`` of CPU time (bench_quality's settings: AdamW 2e-3, 50
    warm-up steps, cosine decay over the budget, batch 256, EMA 0.999)."""
    torch.manual_seed(seed)
    cfg = TrainConfig(
        steps=None,
        time_budget=seconds,
        batch_size=256,
        lr=2e-3,
        warmup_steps=50,
        seed=seed,
        progress="off",
        log_every=10_000,
        ema_decay=0.999 if ema else None,
    )
    wall = trainer_module.time
    trainer_module.time = _CpuClock()
    try:
        result = Trainer(cfg).fit(model, data)
    finally:
        trainer_module.time = wall
    trained = result.ema_model if result.ema_model is not None else result.model
    return trained.eval(), result.steps


def train_all(data, dim, seconds, teacher_seconds, seed, only=None, teachers=TEACHERS):
    """Teachers (those named in ``teachers``), then students (those named in ``only``, default
    all; a distilled student needs its teacher). Yields ``(name, model, steps, budget,
    [sample options])``."""
    cfm = ddpm = None
    if "cfm" in teachers:
        cfm, cfm_steps = fit(build_model("cfm", (dim,)), data, teacher_seconds, seed)
        yield ("cfm (teacher)", cfm, cfm_steps, teacher_seconds,
               [{"steps": s} for s in (1, 2, 5, 10)])  # fmt: skip
    if "ddpm-v" in teachers:
        ddpm, ddpm_steps = fit(build_model("ddpm-v", (dim,)), data, teacher_seconds, seed)
        yield ("ddpm-v (teacher)", ddpm, ddpm_steps, teacher_seconds,
               [{"steps": s} for s in (2, 5, 10, 20)])  # fmt: skip
    total = seconds + teacher_seconds

    def wanted(name):
        return only is None or name in only

    if cfm is not None and wanted("rectified-distillation"):
        rf2, reflow_steps, reflow_s = reflow_round(cfm, data, cfm_steps / teacher_seconds,
                                                   seconds / 2, seed)  # fmt: skip
        yield ("2-rectified flow (reflow of cfm)", rf2, reflow_steps, teacher_seconds + reflow_s,
               [{"steps": s} for s in (1, 2, 10)])  # fmt: skip
        rf = build_model("rectified-distillation", (dim,))
        rf.set_teacher(rf2.field)
        rf.init_from_teacher()
        rf, k = fit(rf, data, seconds / 2, seed)
        yield "2-RF distill <- reflow(cfm)", rf, reflow_steps + k, total, [{}]
    if cfm is not None and wanted("consistency"):
        cd = build_model("consistency", (dim,))
        cd.set_teacher(cfm.field)
        yield ("consistency (CD) <- cfm", *fit(cd, data, seconds, seed), total,
               [{"steps": 1}, {"steps": 2}])  # fmt: skip
    if cfm is not None and wanted("consistency-init"):  # CD read as velocity, from the teacher
        cd = build_model("consistency", (dim,), prediction="velocity")
        cd.set_teacher(cfm.field)
        cd.init_from_teacher()
        yield ("consistency (CD, teacher's weights) <- cfm", *fit(cd, data, seconds, seed), total,
               [{"steps": 1}, {"steps": 2}])  # fmt: skip
    for name, nfes in (
        ("consistency-training", [{"steps": 1}, {"steps": 2}]),
        ("consistency-fm", [{}]),
        ("meanflow", [{"steps": 1}, {"steps": 2}]),
        ("shortcut", [{"steps": 1}, {"steps": 4}]),
    ):
        if wanted(name):
            yield (name, *fit(build_model(name, (dim,)), data, seconds, seed), seconds, nfes)
    if ddpm is None or not wanted("progressive-distillation"):
        return
    pd = build_model(
        "progressive-distillation", (dim,), teacher_steps=16, final_steps=4, round_steps=10**9
    )
    pd.set_teacher(ddpm.field)
    pd.init_from_teacher()
    steps = 0
    for r in range(2):  # two time-budgeted rounds: 16 -> 8, 8 -> 4 (no EMA across rounds)
        if r:
            pd.next_round()
        pd, k = fit(pd, data, seconds / 2, seed, ema=False)
        steps += k
        pd.train()
    pd.eval()
    yield "progressive <- ddpm-v", pd, steps, total, [{"steps": 4}, {"steps": 8}]


def reflow_round(cfm, data, steps_per_second: float, seconds: float, seed: int):
    """One reflow round of the cfm teacher (Liu et al. 2023): a rectified flow started from the
    teacher's weights, retrained on 10,000 (noise, ODE image) pairs (the teacher's own Heun, 10
    steps) for as many Adam steps as the teacher's training rate fits into ``seconds`` (reflow
    counts steps, not time). Returns ``(2-RF, steps, measured CPU seconds incl. the pairs)``."""
    torch.manual_seed(seed)
    rf = build_model("rectified-flow", cfm.event_shape)
    rf.load_state_dict(cfm.state_dict(), strict=False)  # same network; reflow_rounds stays 0
    k = max(1, int(steps_per_second * seconds))
    t0 = time.process_time()
    rf.train()
    rf.reflow(10_000, train_steps=k, sampler="heun", steps=10,
              generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return rf.eval(), k, time.process_time() - t0


def _nfe(model, options) -> int:
    return int(model.sampling_nfe or 1)


def run_digits(seconds, teacher_seconds, seed, curves, only=None, teachers=TEACHERS):
    data = load_dataset("digits")
    train, test = data.split(0.2, seed=seed)
    flat = train.x.float().reshape(len(train), -1)
    x_train = Dataset(flat / 8.0 - 1.0, value_range=(-1.0, 1.0), discrete=False, n_levels=17)
    ref = test.x.float().reshape(len(test), -1)
    n = len(ref)
    extractor = fit_feature_extractor(
        flat, train.y, seed=seed, n_levels=GRID[0], value_range=GRID[1]
    )

    def metrics(s):  # model units [-1, 1] -> pixels; bench_quality's six (no pixel FD)
        return digits_metrics((s.float() + 1.0) * 8.0, ref, extractor)[:6]

    base = build_model("gaussian", (64,))
    g = torch.Generator().manual_seed(seed)
    base.fit((flat + torch.rand(flat.shape, generator=g) - 0.5).double() / 8.0 - 1.0)
    base_m = metrics(draw(base, n, generator=torch.Generator().manual_seed(seed)))
    rows = ["| digits | gaussian (baseline) | - | - | 1 | " + _fmt(base_m) + " | - |"]
    print(rows[-1], flush=True)
    for name, model, steps, budget, options in train_all(
        x_train, 64, seconds, teacher_seconds, seed, only, teachers
    ):
        for opt in options:
            s, _ = _sample_with(model, n, seed, opt)
            m = metrics(s)
            nfe = _nfe(model, opt)
            beats = all(a < b for a, b in zip(m[:4], base_m[:4])) and all(
                a > b for a, b in zip(m[4:], base_m[4:])
            )
            curves.setdefault(name, []).append((nfe, m[3]))
            rows.append(
                f"| digits | {name} | {budget:.0f} s | {steps} | {nfe} | {_fmt(m)} "
                f"| {'yes' if beats else 'no'} |"
            )
            print(rows[-1], flush=True)
    return rows


def run_toy(dataset, seconds, teacher_seconds, seed, only=None, teachers=TEACHERS):
    n_eval = 2000

    def draw(k, g):
        return make_toy(dataset, k, generator=g)

    train = draw(20_000, torch.Generator().manual_seed(seed))
    held_out = draw(n_eval, torch.Generator().manual_seed(seed + 1))
    floor = noise_floor(draw, n_eval, _sw2, repeats=3, generator=torch.Generator().manual_seed(7))
    rows = []
    for name, model, steps, budget, options in train_all(
        train, 2, seconds, teacher_seconds, seed, only, teachers
    ):
        for opt in options:
            s, _ = _sample_with(model, n_eval, seed, opt)
            sw = _sw2(s, held_out)
            rows.append(
                f"| {dataset} | {name} | {budget:.0f} s | {steps} | {_nfe(model, opt)} "
                f"| {sw:.4f} | {floor:.4f} | {sw / floor:.2f} |"
            )
            print(rows[-1], flush=True)
    return rows


def _sample_with(model, n, seed, options):
    if not options:
        return _sample(model, n, seed)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        s = model.sample(n, generator=g, **options)
    return s, time.perf_counter() - t0


def _fmt(m) -> str:
    return " | ".join(f"{v:.4g}" for v in m)


def save_figure(curves: dict, path: Path) -> None:
    """FD in the classifier's features against NFE, one line per model (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.get_cmap("tab20").colors  # one colour per model (the default cycle has 10)
    for i, (name, pts) in enumerate(curves.items()):
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="os^D"[i % 4],
                color=colours[(2 * i) % 20 + (i >= 10)], label=name)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("NFE per sample")
    ax.set_ylabel("FD (digits classifier features)")
    ax.set_title("Few-step generators vs their teachers (digits)")
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="student CPU seconds")
    p.add_argument("--teacher-seconds", type=float, default=60.0, help="teacher CPU seconds")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--datasets", default="digits,moons")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=str(FIGURE))
    p.add_argument("--students", default=None, help="comma-separated catalog names (default all)")
    p.add_argument("--teachers", default=",".join(TEACHERS), help="teachers to train ('' none)")
    p.add_argument("--curves", default=None, help="also write the FD-vs-NFE points to this JSON")
    p.add_argument("--merge", default=None, help="draw the figure from these JSONs and stop")
    args = p.parse_args(argv)
    if args.merge:  # several processes (one thread each) ran parts of the table
        curves: dict = {}
        for f in args.merge.split(","):
            curves.update(json.loads(Path(f).read_text()))
        save_figure(curves, Path(args.figure))
        return
    torch.set_num_threads(args.threads)
    datasets = args.datasets.split(",")
    only = None if args.students is None else set(args.students.split(","))
    teachers = tuple(t for t in args.teachers.split(",") if t)
    print(
        f"students {args.seconds} s, teachers {args.teacher_seconds} s (CPU), {args.threads} "
        f"thread(s), torch {torch.__version__}; {' '.join(sys.argv)}"
    )
    if "digits" in datasets:
        print(
            "| data | model | budget | train steps | NFE | SW2 | MMD | energy | FD features "
            "| precision | recall | beats Gaussian |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        curves = {}
        run_digits(args.seconds, args.teacher_seconds, args.seed, curves, only, teachers)
        if args.curves:
            Path(args.curves).write_text(json.dumps(curves))
        else:
            save_figure(curves, Path(args.figure))
    for d in datasets:
        if d != "digits":
            print("| data | model | budget | train steps | NFE | SW2 | floor | SW2/floor |")
            print("|---|---|---|---|---|---|---|---|")
            run_toy(d, args.seconds, args.teacher_seconds, args.seed, only, teachers)


if __name__ == "__main__":
    main()
