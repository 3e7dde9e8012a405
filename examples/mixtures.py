"""Gaussian mixtures by EM: the lower bound climbing, BIC choosing K, VI pruning (survey §1.1).

Three figures, written to ``--out``:

* ``lower_bound.png`` — the per-sample lower bound ``L(q, θ)`` (Eq. 11) of every EM
  restart, iteration by iteration: it never decreases (Eq. 10 with an exact E-step);
* ``bic.png`` — BIC and AIC of ``GaussianMixture(K)`` on the 8-Gaussians toy for
  ``K = 1..12`` (BIC's minimum is the true K = 8), next to the density of the chosen model;
* ``vi_pruning.png`` — mixture weights of maximum-likelihood EM and of mean-field VI
  (``BayesianGaussianMixture``, Dirichlet-process prior) with 20 components on the moons:
  VI switches most components off, EM uses them all.

Run::

    python examples/mixtures.py [--out mixtures_out] [--n 2000]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from probpath.data import load_dataset  # noqa: E402
from probpath.likelihood.em import ConvergenceWarning  # noqa: E402
from probpath.likelihood.mixture import GaussianMixture  # noqa: E402
from probpath.plotting import plot_density  # noqa: E402

__all__ = ["main"]


def lower_bound_figure(x: torch.Tensor, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for seed in range(5):
        gm = GaussianMixture(8, init_params="random", tol=1e-6, max_iter=300, random_state=seed)
        gm.fit(x)
        ax.plot(range(1, gm.n_iter_ + 1), gm.lower_bounds_, label=f"restart {seed}")
        assert np.all(np.diff(gm.lower_bounds_) >= -1e-9), "EM's bound must not decrease"
    ax.set_xscale("log")
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("lower bound per sample (nats)")
    ax.set_title("moons, K = 8: L(q, θ) climbs (Eq. 10-11)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "lower_bound.png", dpi=120)
    plt.close(fig)


def bic_figure(x: torch.Tensor, out: Path) -> int:
    ks = list(range(1, 13))
    models = [GaussianMixture(k, n_init=3, random_state=0).fit(x) for k in ks]
    bic = [m.bic(x) for m in models]
    aic = [m.aic(x) for m in models]
    best = ks[int(np.argmin(bic))]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    a.plot(ks, bic, "o-", label="BIC")
    a.plot(ks, aic, "s--", label="AIC")
    a.axvline(best, color="k", lw=0.8)
    a.set_xlabel("n_components K")
    a.set_title(f"8 Gaussians: BIC chooses K = {best}")
    a.legend()
    plot_density(b, models[best - 1].log_prob, data=x, dtype=torch.float64)
    b.set_title(f"density of GaussianMixture({best})")
    fig.tight_layout()
    fig.savefig(out / "bic.png", dpi=120)
    plt.close(fig)
    return best


def vi_pruning_figure(x: torch.Tensor, out: Path) -> None:
    try:
        from probpath.likelihood.variational import BayesianGaussianMixture
    except ImportError:  # pragma: no cover - the VI model ships with probpath
        print("BayesianGaussianMixture not available; skipping vi_pruning.png")
        return
    k = 20
    em = GaussianMixture(k, random_state=0, max_iter=500).fit(x)
    vi = BayesianGaussianMixture(n_components=k, random_state=0, max_iter=1000).fit(x)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    order = np.arange(k)
    axes[0].bar(order - 0.2, np.sort(em.weights_.cpu().numpy())[::-1], 0.4, label="EM (MLE)")
    axes[0].bar(order + 0.2, np.sort(vi.weights_.cpu().numpy())[::-1], 0.4, label="VI (DP prior)")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("component (sorted)")
    axes[0].set_ylabel("weight")
    axes[0].legend()
    axes[0].set_title("VI prunes unused components")
    plot_density(axes[1], em.log_prob, data=x, dtype=torch.float64)
    axes[1].set_title(f"EM, K = {k}")
    plot_density(axes[2], vi.log_prob, data=x, dtype=torch.float64)
    used = int((vi.weights_ > 1e-2).sum())
    axes[2].set_title(f"VI, {used} components with weight > 1%")
    fig.tight_layout()
    fig.savefig(out / "vi_pruning.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="mixtures_out")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore", ConvergenceWarning)
    moons = load_dataset("moons", n=args.n, seed=0).x.double()
    eight = load_dataset("8gaussians", n=args.n, seed=0).x.double()
    lower_bound_figure(moons, out)
    best = bic_figure(eight, out)
    vi_pruning_figure(moons, out)
    print(f"BIC chose K = {best} on 8gaussians; figures in {out}/")


if __name__ == "__main__":
    main()
