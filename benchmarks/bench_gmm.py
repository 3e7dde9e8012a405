"""Gaussian-mixture EM: probpath vs scikit-learn at equal threads, from the same full start.

Both libraries run in this process, in float64, on the same data, from the same initial
weights, means **and** precisions (so no k-means runs in either), with ``tol = 0`` so that
both do exactly ``--iters`` EM iterations. Threads are pinned equal for both: NumPy's BLAS
with ``threadpoolctl`` and torch with ``torch.set_num_threads``. The two libraries' repeats
are interleaved (probpath, scikit-learn, probpath, ...) so that load from other jobs on a
shared machine hits both alike; the table reports the median seconds per iteration and the
spread (min-max) over ``--repeats``, their ratio (probpath / scikit-learn; goal <= 0.25)
and the relative difference of the final lower bounds (goal <= 1e-10).

Seconds per iteration are the ``fit`` time over ``--iters``: both fits also validate the
data, set up the start and run one final E-step (scikit-learn's ``labels_`` pass; probpath
does the same), so the per-iteration figure carries the same small overhead on both sides.

Usage::

    python benchmarks/bench_gmm.py                             # all cases, 1 and 2 threads
    python benchmarks/bench_gmm.py --cases full,diag --threads 1 --repeats 3
    python benchmarks/bench_gmm.py --cases cuda                # probpath on the GPU
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from probpath.likelihood.mixture import GaussianMixture

__all__ = ["CASES", "make_case", "time_fit", "run_case", "main"]

# name: (N, d, K, covariance_type)
CASES = {
    "full": (1_000_000, 2, 8, "full"),
    "tied": (1_000_000, 2, 8, "tied"),
    "diag": (1_000_000, 2, 8, "diag"),
    "spherical": (1_000_000, 2, 8, "spherical"),
    "full_d64": (50_000, 64, 8, "full"),
}


def make_case(n: int, d: int, k: int, covariance_type: str, seed: int = 0):
    """Data from a random K-component mixture and a full start shared by both fits."""
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


def time_fit(make, x) -> tuple[float, object]:
    """Seconds of one ``make().fit(x)`` (CUDA synchronised) and the fitted model."""
    model = make()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    model.fit(x)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, model


def run_case(name: str, iters: int, repeats: int, device: str = "cpu") -> dict:
    """Interleaved repeats of both libraries on case ``name``; timings and lower bounds."""
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    n, d, k, ct = CASES["full" if name == "cuda" else name]
    x, init = make_case(n, d, k, ct)
    common = {"covariance_type": ct, "tol": 0.0, "max_iter": iters}
    xt = torch.as_tensor(x, device=device)
    pp_times, sk_times = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # one untimed fit each: imports, allocator and (on a GPU) kernel warm-up
        time_fit(lambda: GaussianMixture(k, **{**common, "max_iter": 1}, **init), xt)
        time_fit(lambda: SkGaussianMixture(k, **{**common, "max_iter": 1}, **init), x)
        for _ in range(repeats):
            t, pp = time_fit(lambda: GaussianMixture(k, **common, **init), xt)
            pp_times.append(t / iters)
            t, sk = time_fit(lambda: SkGaussianMixture(k, **common, **init), x)
            sk_times.append(t / iters)
    pp_med, sk_med = statistics.median(pp_times), statistics.median(sk_times)
    return {
        "case": name,
        "N": n,
        "d": d,
        "K": k,
        "cov": ct,
        "device": device,
        "probpath": (pp_med, min(pp_times), max(pp_times)),
        "sklearn": (sk_med, min(sk_times), max(sk_times)),
        "ratio": pp_med / sk_med,
        "bound_rel_diff": abs(pp.lower_bound_ - sk.lower_bound_) / abs(sk.lower_bound_),
    }


def _fmt(t: tuple[float, float, float]) -> str:
    return f"{t[0]:.4f} [{t[1]:.4f}-{t[2]:.4f}]"


def main(argv=None) -> None:
    from threadpoolctl import threadpool_limits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--cases", default="full,tied,diag,spherical,full_d64")
    args = parser.parse_args(argv)
    print(
        f"iters={args.iters} repeats={args.repeats} torch={torch.__version__} "
        "(seconds per iteration: median [min-max])"
    )
    print(
        f"{'threads':>7} {'case':<10} {'N':>8} {'d':>3} {'K':>3} {'cov':<9} {'device':<6} "
        f"{'probpath s/it':>24} {'sklearn s/it':>24} {'ratio':>6} {'bound rel diff':>14}"
    )
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            for name in args.cases.split(","):
                device = "cuda" if name == "cuda" else "cpu"
                if device == "cuda" and not torch.cuda.is_available():
                    print(f"{threads:>7} cuda       (no CUDA device available; skipped)")
                    continue
                r = run_case(name, args.iters, args.repeats, device=device)
                print(
                    f"{threads:>7} {r['case']:<10} {r['N']:>8} {r['d']:>3} {r['K']:>3} "
                    f"{r['cov']:<9} {r['device']:<6} {_fmt(r['probpath']):>24} "
                    f"{_fmt(r['sklearn']):>24} {r['ratio']:>6.3f} {r['bound_rel_diff']:>14.2e}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
