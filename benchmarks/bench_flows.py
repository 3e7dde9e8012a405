"""probpath's RealNVP and MAF vs zuko's on the same data, sizes, optimizer and steps.

Prints, per data set and flow: held-out NLL (nats) after the same number of steps, time per
training step, and the ratios probpath / zuko. Goal (Deep routes issue §5): NLL within 2%
and time per step ≤ 1.0× zuko's.

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
    """Train/test tensors: 2-D toys as they are; digits scaled to [-1, 1], dequantised."""
    ds = load_dataset(name, n=20_000 if name != "digits" else None, seed=seed)
    if ds.discrete:
        ds = ds.scaled(-1.0, 1.0)
        g = torch.Generator().manual_seed(seed)
        noise = (torch.rand(ds.x.shape, generator=g) - 0.5) * ds.bin_width
        ds = type(ds)(**{**ds.__dict__, "x": ds.x + noise})
    train, test = ds.split(0.2, seed=seed)
    return train.x.flatten(1), test.x.flatten(1)


def _train(log_prob, params, x, steps: int, batch: int, seed: int) -> float:
    """Adam on the NLL; returns seconds per step (after 20 warm-up steps)."""
    opt = torch.optim.Adam(params, lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    t0 = None
    for step in range(steps + 20):
        if step == 20:
            t0 = time.perf_counter()
        idx = torch.randint(0, len(x), (batch,), generator=g)
        loss = -log_prob(x[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def _nll(log_prob, x) -> float:
    with torch.no_grad():
        return -torch.cat([log_prob(c) for c in x.split(4096)]).mean().item()


def main() -> None:
    import zuko

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--transforms", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default="moons,8gaussians,digits")
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
        f"actnorm={args.actnorm} "
        f"threads={args.threads} torch={torch.__version__} zuko={zuko.__version__}"
    )
    header = (
        "| data | flow | NLL probpath | NLL zuko | NLL ratio | ms/step probpath "
        "| ms/step zuko | time ratio |"
    )
    rows = [header, "|" + "---|" * 8]
    for name in args.data.split(","):
        train, test = _data(name)
        d = train.shape[1]
        pairs = {
            "RealNVP": (
                RealNVP((d,), n_blocks=k, hidden=hidden, actnorm=args.actnorm),
                zuko.flows.RealNVP(d, transforms=k, hidden_features=hidden),
            ),
            "MAF": (
                MAF((d,), n_layers=k, hidden=hidden),
                zuko.flows.MAF(d, transforms=k, hidden_features=hidden),
            ),
        }
        for flow, (ours, theirs) in pairs.items():
            torch.manual_seed(0)
            t_ours = _train(ours.log_prob, ours.parameters(), train, args.steps, args.batch, 1)
            torch.manual_seed(0)
            t_zuko = _train(
                lambda v, f=theirs: f().log_prob(v),
                theirs.parameters(),
                train,
                args.steps,
                args.batch,
                1,
            )
            ours.eval()
            n_ours, n_zuko = (
                _nll(ours.log_prob, test),
                _nll(lambda v, f=theirs: f().log_prob(v), test),
            )
            rows.append(
                f"| {name} (d={d}) | {flow} | {n_ours:.4f} | {n_zuko:.4f} | "
                f"{n_ours / n_zuko if n_zuko else float('nan'):.3f} | {1e3 * t_ours:.2f} | "
                f"{1e3 * t_zuko:.2f} | {t_ours / t_zuko:.2f} |"
            )
            print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
