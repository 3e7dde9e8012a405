"""beta-VAE (beta = 4) vs VAE (beta = 1) Factor-CLS on shapes2d, over several seeds (Table 4).

The protocol is :mod:`probpath.survey.disentanglement` (which ``probpath survey --tables 4``
runs too; see benchmarks/README.md for the numbers and each departure from Higgins et al.):
64x64 binary shapes2d, Bernoulli-decoder MLP VAE with 10 latents, Adam 1e-3, batch 64, the same
``--steps`` for both betas; Factor-CLS on posterior means with 64 pairs per vote, the fixed
factor one of scale / rotation / x / y, a logistic regression on raw votes. ``--size 32
--all-factors --standardize`` gives the protocol of earlier sessions.

Besides the score it prints the KL per image, the number of active latents (mean KL over the
grid above 0.1 nats) and the reconstruction NLL (Bernoulli, nats per image).

Run: ``python benchmarks/bench_disentanglement.py --seeds 3 4 5 --steps 2000``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

import torch
from torch.nn.functional import binary_cross_entropy_with_logits

from probpath.data import render_shapes2d
from probpath.likelihood.vae.common import kl_standard_normal
from probpath.survey.disentanglement import (
    FIXED_FACTORS,
    IMAGE_SIZE,
    grid_factors,
    score_factor_vae,
    train_factor_vae,
)


def train(beta: float, seed: int, args):
    run = train_factor_vae(
        beta,
        seed,
        steps=args.steps,
        n_images=args.n_images,
        latent_dim=args.latent_dim,
        hidden=args.hidden,
        size=args.size,
    )
    return run.model, run.seconds


def score(model, seed: int, images: torch.Tensor, args):
    return score_factor_vae(
        model,
        seed,
        n_train=args.n_train,
        n_test=args.n_test,
        images=images,
        fixed_factors=None if args.all_factors else FIXED_FACTORS,
        standardize=args.standardize,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 4.0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--n-images", type=int, default=20_000)
    p.add_argument("--latent-dim", type=int, default=10)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--size", type=int, default=IMAGE_SIZE, help="image side (64 as dSprites)")
    p.add_argument("--all-factors", action="store_true", help="votes may fix shape too")
    p.add_argument("--standardize", action="store_true", help="standardise votes first")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write the raw results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = render_shapes2d(grid_factors(), args.size)
    rows = []
    for seed in args.seeds:  # interleave the betas within each seed
        for beta in args.betas:
            model, seconds = train(beta, seed, args)
            res = score(model, seed, images, args)
            with torch.no_grad():  # KL(q(z|x) || N(0, I)) and -log p(x|mu) over grid images
                mu, log_var = model.encode(images[::4])
                kl_dims = kl_standard_normal(mu, log_var).mean(0)
                kl = float(kl_dims.sum())
                active = int((kl_dims > 0.1).sum())
                nll = float(
                    binary_cross_entropy_with_logits(model.decode(mu), images[::4], reduction="sum")
                    / len(mu)
                )
            rows.append(
                {
                    "beta": beta,
                    "seed": seed,
                    "accuracy": res.accuracy,
                    "se": res.std_error,
                    "train_accuracy": res.train_accuracy,
                    "kl_nats": kl,
                    "kl_per_dim": kl_dims.tolist(),
                    "active": active,
                    "recon_nll": nll,
                    "train_s": seconds,
                }
            )
            print(
                f"beta={beta:<4g} seed={seed}  Factor-CLS {100 * res.accuracy:5.1f} % "
                f"(s.e. {100 * res.std_error:.1f}, train {100 * res.train_accuracy:.1f})  "
                f"KL {kl:5.2f} nats ({active} active)  recon {nll:6.1f} nats  "
                f"train {seconds:4.0f} s",
                flush=True,
            )
    chance = 100 / (5 if args.all_factors else len(FIXED_FACTORS))
    print(f"\nbeta   mean Factor-CLS   sd over seeds   min..max   (chance {chance:.0f} %)")
    for beta in args.betas:
        acc = [100 * r["accuracy"] for r in rows if r["beta"] == beta]
        sd = statistics.stdev(acc) if len(acc) > 1 else math.nan
        print(
            f"{beta:<5g}  {statistics.mean(acc):8.1f} %   {sd:10.1f}      "
            f"{min(acc):.1f}..{max(acc):.1f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
