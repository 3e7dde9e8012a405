"""beta-VAE (beta = 4) vs VAE (beta = 1) Factor-CLS on shapes2d, over several seeds (Table 4).

Protocol (all choices fixed before any run; the code is :mod:`probpath.survey.disentanglement`,
which ``probpath survey --tables 4`` runs too; see benchmarks/README.md for the numbers):

* data: ``make_shapes2d(n_images, seed=1000 + seed)`` (32x32 binary, factors uniform on the
  3 x 6 x 8 x 8 x 8 grid), pixels in {0, 1};
* model: ``VAE`` / ``BetaVAE`` with a Bernoulli decoder (``data_range=(0, 1)``), MLP encoder /
  decoder ``hidden``, ``latent_dim`` latents (dSprites' beta-VAE used 10); the same
  architecture, optimiser and step budget for both betas;
* training: Adam (lr 1e-3), batch 64, ``--steps`` steps, ``torch.manual_seed(seed)``;
* metric: :func:`probpath.metrics.factor_cls_score` with 64 pairs per vote, ``--n-train`` /
  ``--n-test`` votes, votes drawn with ``Generator().manual_seed(seed)``. The code of every one
  of the 9,216 grid images is computed once (posterior mean), so ``render`` looks codes up and
  ``encode`` is the identity: the same votes as encoding each rendered image, far cheaper.

Run: ``python benchmarks/bench_disentanglement.py --seeds 0 1 2 --steps 3000``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

import torch

from probpath.data import render_shapes2d
from probpath.likelihood.vae.common import kl_standard_normal
from probpath.survey.disentanglement import grid_factors, score_factor_vae, train_factor_vae


def train(beta: float, seed: int, args):
    run = train_factor_vae(
        beta,
        seed,
        steps=args.steps,
        n_images=args.n_images,
        latent_dim=args.latent_dim,
        hidden=args.hidden,
    )
    return run.model, run.seconds


def score(model, seed: int, images: torch.Tensor, args):
    return score_factor_vae(model, seed, n_train=args.n_train, n_test=args.n_test, images=images)


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
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write the raw results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = render_shapes2d(grid_factors())
    rows = []
    for seed in args.seeds:  # interleave the betas within each seed
        for beta in args.betas:
            model, seconds = train(beta, seed, args)
            res = score(model, seed, images, args)
            with torch.no_grad():  # average KL(q(z|x) || N(0, I)) over grid images, nats
                mu, log_var = model.encode(images[::4])
                kl = float(kl_standard_normal(mu, log_var).sum(1).mean())
            rows.append(
                {
                    "beta": beta,
                    "seed": seed,
                    "accuracy": res.accuracy,
                    "se": res.std_error,
                    "train_accuracy": res.train_accuracy,
                    "kl_nats": kl,
                    "train_s": seconds,
                }
            )
            print(
                f"beta={beta:<4g} seed={seed}  Factor-CLS {100 * res.accuracy:5.1f} % "
                f"(s.e. {100 * res.std_error:.1f}, train {100 * res.train_accuracy:.1f})  "
                f"KL {kl:6.2f} nats  train {seconds:5.0f} s",
                flush=True,
            )
    print("\nbeta   mean Factor-CLS   sd over seeds   min..max   (chance 20 %)")
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
