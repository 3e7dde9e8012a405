"""probpath's RealNVP and MAF vs zuko's on the same data, sizes, optimizer and steps.

Prints, per data set and flow: held-out test NLL (nats, mean ± sd over ``--seeds`` runs) at
the step of best validation NLL within the same number of steps (early stopping), time per
training step, and the ratios probpath / zuko. The NLL gap is ``(ours − zuko) / |zuko|``
(positive: probpath worse). Goal (Deep routes issue §5): NLL within 2% and time per step
≤ 1.0× zuko's.

Run: ``python benchmarks/bench_flows.py [--steps 2000] [--threads 2]`` (needs ``pip install
-e .[bench]`` for zuko).
"""

from __future__ import annotations

import argparse
import time

import torch

from probpath.data import load_dataset
from probpath.likelihood.flows import MAF, RealNVP


def _data(name: str, seed: int = 0):
    """Train / validation / test tensors (70/10/20): 2-D toys as they are; digits scaled to
    [-1, 1] and uniformly dequantised."""
    ds = load_dataset(name, n=20_000 if name != "digits" else None, seed=seed)
    if ds.discrete:
        ds = ds.scaled(-1.0, 1.0)
        g = torch.Generator().manual_seed(seed)
        noise = (torch.rand(ds.x.shape, generator=g) - 0.5) * ds.bin_width
        ds = type(ds)(**{**ds.__dict__, "x": ds.x + noise})
    rest, test = ds.split(0.2, seed=seed)
    train, val = rest.split(0.125, seed=seed)
    return train.x.flatten(1), val.x.flatten(1), test.x.flatten(1)


def _nll(log_prob, x) -> float:
    with torch.no_grad():
        return -torch.cat([log_prob(c) for c in x.split(4096)]).mean().item()


def _train(runs, data, steps: int, batch: int, seed: int, every: int):
    """Adam on the NLL for each ``(module, log_prob)`` of ``runs`` in lockstep (one step of
    each in turn, the same batches), so that both libraries see the same machine load.

    Early stopping: the validation NLL is taken every ``every`` steps and the weights of the
    best one are kept (both libraries over-fit the 1,437 digits images long before 2,000
    steps). Returns, per run: (seconds per training step, excluding the validation passes
    and 20 warm-up steps; test NLL at the best validation step; that step).
    """
    train, val, test = data
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m, _ in runs]
    g = torch.Generator().manual_seed(seed)
    best = [(float("inf"), 0, None)] * len(runs)
    elapsed = [0.0] * len(runs)
    for step in range(1, steps + 21):
        xb = train[torch.randint(0, len(train), (batch,), generator=g)]
        for i, ((module, log_prob), opt) in enumerate(zip(runs, opts)):
            t0 = time.perf_counter()
            loss = -log_prob(xb).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step > 20:
                elapsed[i] += time.perf_counter() - t0
            if step > 20 and ((step - 20) % every == 0 or step == steps + 20):
                module.eval()
                v = _nll(log_prob, val)
                module.train()
                if v < best[i][0]:
                    state = {k: t.clone() for k, t in module.state_dict().items()}
                    best[i] = (v, step - 20, state)
    out = []
    for (module, log_prob), e, (_, best_step, state) in zip(runs, elapsed, best):
        module.load_state_dict(state)
        module.eval()
        out.append((e / steps, _nll(log_prob, test), best_step))
    return out


def _mean_sd(v: list[float]) -> str:
    t = torch.tensor(v, dtype=torch.float64)
    return f"{t.mean():.4f} ± {t.std():.4f}" if len(v) > 1 else f"{t.item():.4f}"


def main() -> None:
    import zuko

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--transforms", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default="moons,8gaussians,digits")
    p.add_argument("--seeds", type=int, default=3, help="independent runs (weights, batches)")
    p.add_argument("--eval-every", type=int, default=100, help="validation period (steps)")
    p.add_argument(
        "--actnorm",
        action="store_true",
        help="give probpath's RealNVP its ActNorm layers (zuko's has none; off = same model)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    hidden = (args.hidden, args.hidden)
    k = args.transforms
    print(
        f"steps={args.steps} batch={args.batch} transforms={k} hidden={hidden} "
        f"actnorm={args.actnorm} seeds={args.seeds} eval_every={args.eval_every} "
        f"threads={args.threads} torch={torch.__version__} zuko={zuko.__version__}"
    )
    header = (
        "| data | flow | NLL probpath | NLL zuko | NLL gap | best step probpath / zuko "
        "| ms/step probpath | ms/step zuko | time ratio |"
    )
    rows = [header, "|" + "---|" * 9]
    for name in args.data.split(","):
        data = _data(name)
        d = data[0].shape[1]
        for flow in ("RealNVP", "MAF"):
            res = {"ours": [], "zuko": []}
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                if flow == "RealNVP":
                    ours = RealNVP((d,), n_blocks=k, hidden=hidden, actnorm=args.actnorm)
                    theirs = zuko.flows.RealNVP(d, transforms=k, hidden_features=hidden)
                else:
                    ours = MAF((d,), n_layers=k, hidden=hidden)
                    theirs = zuko.flows.MAF(d, transforms=k, hidden_features=hidden)
                ours_run, zuko_run = _train(
                    [(ours, ours.log_prob), (theirs, lambda v, f=theirs: f().log_prob(v))],
                    data,
                    args.steps,
                    args.batch,
                    seed,
                    args.eval_every,
                )
                res["ours"].append(ours_run)
                res["zuko"].append(zuko_run)
            (t_o, n_o, s_o), (t_z, n_z, s_z) = (list(zip(*res[k])) for k in ("ours", "zuko"))
            # Relative gap (positive: probpath worse); NLLs of dequantised digits are negative,
            # so a plain ratio would read backwards there.
            gap = (sum(n_o) - sum(n_z)) / abs(sum(n_z))
            rows.append(
                f"| {name} (d={d}) | {flow} | {_mean_sd(n_o)} | {_mean_sd(n_z)} "
                f"| {100 * gap:+.1f}% | "
                f"{'/'.join(map(str, s_o))} · {'/'.join(map(str, s_z))} | "
                f"{1e3 * sum(t_o) / len(t_o):.2f} | {1e3 * sum(t_z) / len(t_z):.2f} | "
                f"{sum(t_o) / sum(t_z):.2f} |"
            )
            print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
