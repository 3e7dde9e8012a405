"""Gaussian-mixture EM: probpath vs scikit-learn on the same data and initialisation.

Both libraries run in this process, in float64, with the same thread count, from the same
initial weights / means / precisions, with ``tol = 0`` so that both do exactly ``--iters``
EM iterations. Printed per case: seconds per iteration of each, their ratio (probpath /
scikit-learn; the goal for the main case is <= 0.25), and the relative difference of the
final lower bounds (the goal is <= 1e-6).

Usage::

    python benchmarks/bench_gmm.py                       # all cases, 50 iterations
    python benchmarks/bench_gmm.py --iters 10 --cases main
    python benchmarks/bench_gmm.py --cases main,large_n,diag,spherical,cuda
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from probpath.likelihood.mixture import GaussianMixture

__all__ = ["CASES", "make_case", "run_case", "main"]

# name: (N, d, K, covariance_type)
CASES = {
    "main": (100_000, 16, 16, "full"),
    "large_n": (1_000_000, 2, 8, "full"),
    "diag": (100_000, 16, 16, "diag"),
    "spherical": (100_000, 16, 16, "spherical"),
    "tied": (100_000, 16, 16, "tied"),
}


def make_case(n: int, d: int, k: int, covariance_type: str, seed: int = 0):
    """Data from a random K-component mixture and an initialisation shared by both fits."""
    rng = np.random.RandomState(seed)
    centers = rng.randn(k, d) * 3.0
    scales = rng.uniform(0.5, 1.5, size=(k, 1, 1)) * np.eye(d) + 0.2 * rng.randn(k, d, d)
    labels = rng.randint(k, size=n)
    x = centers[labels] + np.einsum("nij,nj->ni", scales[labels], rng.randn(n, d))
    means = x[rng.choice(n, k, replace=False)]
    weights = np.full(k, 1.0 / k)
    var = x.var(0).mean()
    precisions = {
        "full": np.stack([np.eye(d) / var] * k),
        "tied": np.eye(d) / var,
        "diag": np.full((k, d), 1.0 / var),
        "spherical": np.full(k, 1.0 / var),
    }[covariance_type]
    init = {"weights_init": weights, "means_init": means, "precisions_init": precisions}
    return x, init


def _time_fit(make, x, repeats: int = 1):
    best = float("inf")
    model = None
    for _ in range(repeats):
        model = make()
        t0 = time.perf_counter()
        model.fit(x)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, model


def run_case(name: str, iters: int, device: str = "cpu", with_sklearn: bool = True) -> dict:
    """Fit both libraries on case ``name``; returns timings and the lower bounds."""
    n, d, k, ct = CASES["main" if name == "cuda" else name]
    x, init = make_case(n, d, k, ct)
    common = {"covariance_type": ct, "tol": 0.0, "max_iter": iters}
    out = {"case": name, "N": n, "d": d, "K": k, "cov": ct, "device": device}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xt = torch.as_tensor(x, device=device)
        if device != "cpu":  # warm up kernels once
            GaussianMixture(k, **common, **init, device=device, max_iter=1).fit(xt)
        t_pp, pp = _time_fit(lambda: GaussianMixture(k, **common, **init, device=device), xt)
        out["probpath_s_per_iter"] = t_pp / iters
        out["probpath_lower_bound"] = pp.lower_bound_
        if with_sklearn:
            from sklearn.mixture import GaussianMixture as SkGaussianMixture

            t_sk, sk = _time_fit(lambda: SkGaussianMixture(k, **common, **init), x)
            out["sklearn_s_per_iter"] = t_sk / iters
            out["sklearn_lower_bound"] = sk.lower_bound_
            out["ratio"] = out["probpath_s_per_iter"] / out["sklearn_s_per_iter"]
            out["bound_rel_diff"] = abs(pp.lower_bound_ - sk.lower_bound_) / abs(sk.lower_bound_)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="main,large_n,diag,spherical,cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    print(f"threads={args.threads} iters={args.iters} torch={torch.__version__}")
    header = (
        f"{'case':<10} {'N':>9} {'d':>3} {'K':>3} {'cov':<9} {'device':<6} "
        f"{'probpath s/it':>13} {'sklearn s/it':>12} {'ratio':>7} {'bound rel diff':>14}"
    )
    print(header)
    for name in args.cases.split(","):
        device = "cpu"
        if name == "cuda":
            if not torch.cuda.is_available():
                print("cuda       (no CUDA device available; skipped)")
                continue
            device = "cuda"
        r = run_case(name, args.iters, device=device, with_sklearn=True)
        print(
            f"{r['case']:<10} {r['N']:>9} {r['d']:>3} {r['K']:>3} {r['cov']:<9} "
            f"{r['device']:<6} {r['probpath_s_per_iter']:>13.4f} {r['sklearn_s_per_iter']:>12.4f} "
            f"{r['ratio']:>7.3f} {r['bound_rel_diff']:>14.2e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
