"""Samplers vs diffusers' schedulers: accuracy at equal NFE and per-step overhead.

Accuracy. An exact-score model: the Gaussian-mixture oracle (2-D, 7 components) on the DDPM
linear VP schedule (beta 1e-4..0.02, N = 1000). Every sampler starts from the same
``x_T ~ N(0, I)`` at its first time; the error is the RMS distance of its output to a
tight-tolerance (dopri5, rtol = atol = 1e-10) solution of the same probability-flow ODE
from the same start, written in ``x_tilde = x / alpha``, ``sigma_tilde = sigma / alpha``
(``dx_tilde / dsigma_tilde = eps_hat``), integrated to ``sigma = 0``. diffusers' schedulers
get the oracle evaluated at exactly the noise level their update assumes (their ``sigmas``
table; ``alphas_cumprod`` for DDIM), so their error is the solver's alone.

Overhead. Time per step of the sampling loop with a trivial network (``eps = 0.5 x``, batch
64 x 2, one thread), minus the network's own time, for probpath's ``dpmpp_2m`` and diffusers'
``DPMSolverMultistepScheduler`` (``set_timesteps`` included in both, as in a real call).

Run: ``python benchmarks/bench_samplers.py`` (needs ``pip install diffusers``).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from probpath.paths import AffinePath, FunctionField, GaussianMixtureOracle
from probpath.sampling import make_grid, sample_path, timesteps

N_SAMPLES = 256
NFES = (5, 10, 20)


def make_oracle() -> GaussianMixtureOracle:
    k = torch.arange(6, dtype=torch.float64) * (2 * math.pi / 6)
    means = torch.cat([torch.stack([k.cos(), k.sin()], 1), torch.zeros(1, 2, dtype=torch.float64)])
    stds = torch.tensor([0.15, 0.1, 0.2, 0.12, 0.18, 0.1, 0.25], dtype=torch.float64)
    covs = torch.diag_embed(stds[:, None].expand(7, 2) ** 2)
    weights = torch.tensor([1, 2, 1, 2, 1, 2, 3], dtype=torch.float64)
    return GaussianMixtureOracle(weights, means, covs, AffinePath("ddpm"))


# -- the reference: PF ODE in sigma_tilde ------------------------------------------------------
def eps_at(oracle, x_vp: torch.Tensor, st: float) -> torch.Tensor:
    """The oracle's eps_hat at x (VP scaling) and noise level sigma_tilde = st."""
    a = 1.0 / math.sqrt(1.0 + st * st)
    b = x_vp.shape[0]
    alpha = torch.full((b,), a, dtype=x_vp.dtype)
    return oracle.x0_eps_at(x_vp, alpha, alpha * st)[1]


def reference(oracle, x_tilde: torch.Tensor, st_start: float) -> torch.Tensor:
    """x0 reached by the probability-flow ODE from ``x_tilde`` at ``sigma_tilde = st_start``."""
    from torchdiffeq import odeint

    def rhs(s, y):
        st = float(s)
        return eps_at(oracle, y / math.sqrt(1.0 + st * st), st)

    # integrate in u = sqrt(sigma_tilde) is unnecessary: dopri5 adapts; keep stages in range
    span = torch.tensor([st_start, 0.0], dtype=torch.float64)
    return odeint(rhs, x_tilde, span, rtol=1e-10, atol=1e-10, options={"step_t": span})[-1]


# -- diffusers ---------------------------------------------------------------------------------
def diffusers_configs():
    from diffusers import (
        DDIMScheduler,
        DEISMultistepScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        HeunDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    base = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02}
    base["beta_schedule"] = "linear"
    cfgs = []
    for spacing in ("leading", "trailing", "linspace"):
        cfgs.append(
            (f"DDIM {spacing}", DDIMScheduler, {"clip_sample": False, "timestep_spacing": spacing})
        )
    for order in (2, 3):
        for extra_name, extra in (
            ("", {}),
            (" trailing", {"timestep_spacing": "trailing"}),
            (" karras", {"use_karras_sigmas": True}),
            (" lu-lambdas", {"use_lu_lambdas": True}),
        ):
            cfgs.append(
                (
                    f"DPMSolver++ {order}M{extra_name}",
                    DPMSolverMultistepScheduler,
                    {"solver_order": order, "algorithm_type": "dpmsolver++", **extra},
                )
            )
            cfgs.append(
                (
                    f"UniPC-bh2 {order}{extra_name}",
                    UniPCMultistepScheduler,
                    {"solver_order": order, "solver_type": "bh2", **extra},
                )
            )
            if extra_name != " lu-lambdas":
                cfgs.append(
                    (
                        f"DEIS {order}{extra_name}",
                        DEISMultistepScheduler,
                        {"solver_order": order, **extra},
                    )
                )
        cfgs.append(
            (
                f"UniPC-bh1 {order}",
                UniPCMultistepScheduler,
                {"solver_order": order, "solver_type": "bh1"},
            )
        )
    for extra_name, extra in (("", {}), (" karras", {"use_karras_sigmas": True})):
        for spacing in ("linspace", "trailing"):
            opts = {"timestep_spacing": spacing, **extra}
            cfgs.append((f"Euler {spacing}{extra_name}", EulerDiscreteScheduler, opts))
            cfgs.append((f"Heun {spacing}{extra_name}", HeunDiscreteScheduler, dict(opts)))
    return base, cfgs


def run_diffusers(oracle, cls, base, opts, nfe, x_t):
    """Run one scheduler with about ``nfe`` model calls; returns (x0, nfe, sigma_tilde_start)."""
    sched = cls(**base, **opts)
    heun = cls.__name__.startswith("Heun")
    steps = (nfe + 1) // 2 if heun else nfe
    sched.set_timesteps(steps)
    ts = sched.timesteps
    sig = getattr(sched, "sigmas", None)
    abar = sched.alphas_cumprod.to(torch.float64)

    def sigma_tilde(i, t):
        if sig is not None and len(sig) > i and cls.__name__ != "DDIMScheduler":
            return float(sig[i])
        a = float(abar[int(t)])
        return math.sqrt((1 - a) / a)

    st0 = sigma_tilde(0, ts[0])
    latents = x_t * float(sched.init_noise_sigma)
    euler_like = float(sched.init_noise_sigma) > 1.0
    x_tilde0 = latents if euler_like else latents * math.sqrt(1 + st0 * st0)
    calls = 0
    for i, t in enumerate(ts):
        inp = sched.scale_model_input(latents, t)
        eps = eps_at(oracle, inp, sigma_tilde(i, t))
        calls += 1
        latents = sched.step(eps, t, latents).prev_sample
    return latents, calls, st0, x_tilde0


# -- probpath ----------------------------------------------------------------------------------
# sigma_tilde range of the grid per NFE budget (make_grid's sigma_max / sigma_min), chosen
# on this problem (data of unit scale, modes of width 0.1-0.25); the wider the budget, the
# wider the range. The standard full-range grids are listed too.
TUNED = {5: (2.0, 0.1), 10: (3.0, 0.05), 20: (8.0, 0.05)}


def probpath_configs():
    """(label, sampler, spacing, grid kwargs per NFE, sampler options)."""
    cfgs = []
    extrap = {"final_extrapolate": True}
    for name in ("dpmpp_3m", "dpmpp_2m"):
        for spacing, rho in (("log_snr", 7.0), ("edm", 7.0), ("edm", 3.0)):
            tuned = {n: {"sigma_max": a, "sigma_min": b, "rho": rho} for n, (a, b) in TUNED.items()}
            label = f"{name} {spacing}" + (f" rho={rho:g}" if spacing == "edm" else "")
            cfgs.append((f"{label} tuned", name, spacing, tuned, {}))
            cfgs.append((f"{label} tuned extrap", name, spacing, tuned, extrap))
        for spacing in ("log_snr", "edm"):
            full = dict.fromkeys(NFES, {})
            cfgs.append((f"{name} {spacing} full-range", name, spacing, full, {}))
    full = dict.fromkeys(NFES, {})
    for name, spacing in (("ddim", "log_snr"), ("edm_heun", "edm"), ("dpm_solver_2", "log_snr")):
        cfgs.append((f"{name} {spacing} full-range", name, spacing, full, {}))
    cfgs.append(("dpm_solver_3 log_snr full-range", "dpm_solver_3", "log_snr", full, {}))
    return cfgs


def run_probpath(oracle, name, spacing, grid_kw, opts, nfe, x_t):
    per_step = {"edm_heun": 2, "dpm_solver_2": 2, "dpm_solver_3": 3}.get(name, 1)
    steps = (nfe - 1) // per_step + 1 if per_step > 1 else nfe  # final step costs 1 NFE
    ts = make_grid(oracle.path, steps, spacing, **grid_kw)
    out = sample_path(oracle, x_t.shape, sampler=name, grid=ts, x_init=x_t, **opts)
    return out.x, out.nfe


def accuracy(show_all: bool):
    oracle = make_oracle()
    gen = torch.Generator().manual_seed(0)
    x_t = torch.randn(N_SAMPLES, 2, generator=gen, dtype=torch.float64)
    refs: dict[float, torch.Tensor] = {}

    def ref_for(st0, x_tilde0):
        key = round(st0, 9)
        if key not in refs:
            refs[key] = reference(oracle, x_tilde0, st0)
        return refs[key]

    def rms(a, b):
        return float((a - b).pow(2).sum(1).mean().sqrt())

    v1 = oracle.path(torch.tensor(1.0, dtype=torch.float64))
    st_ours = float(v1.sigma / v1.alpha)
    base, dcfgs = diffusers_configs()
    rows = []  # (side, label, {nfe: (err, real_nfe)})
    for label, cls, opts in dcfgs:
        res = {}
        for nfe in NFES:
            try:
                out, calls, st0, xt0 = run_diffusers(oracle, cls, base, opts, nfe, x_t)
                res[nfe] = (rms(out, ref_for(st0, xt0)), calls)
            except Exception as exc:  # a scheduler refusing an option/NFE combination
                res[nfe] = (float("nan"), f"{type(exc).__name__}")
        rows.append(("diffusers", label, res))
    for label, name, spacing, grid_kw, opts in probpath_configs():
        res = {}
        for nfe in NFES:
            out, calls = run_probpath(oracle, name, spacing, grid_kw[nfe], opts, nfe, x_t)
            res[nfe] = (rms(out, ref_for(st_ours, x_t / float(v1.alpha))), calls)
        rows.append(("probpath", label, res))

    print("\n## Accuracy: RMS error vs the exact PF-ODE solution (DDPM linear VP, exact GMM eps)")
    print(f"{'side':10s} {'sampler':36s}" + "".join(f"  NFE~{n:<3d} (nfe)  " for n in NFES))
    for side, label, res in rows:
        cells = "".join(f"  {res[n][0]:9.2e} ({res[n][1]!s:>3}) " for n in NFES)
        print(f"{side:10s} {label:36s}{cells}")

    def best(side, n):
        cands = [
            (res[n][0], label)
            for s, label, res in rows
            if s == side and res[n][1] == n and math.isfinite(res[n][0])
        ]
        return min(cands)

    print("\n## Best at equal NFE (only runs with exactly that NFE)")
    print(f"{'NFE':>4s}  {'probpath best':48s} {'diffusers best':48s} ratio")
    for n in NFES:
        ep, lp = best("probpath", n)
        ed, ld = best("diffusers", n)
        print(f"{n:4d}  {ep:9.2e} {lp:38s} {ed:9.2e} {ld:38s} {ep / ed:5.3f}")


# -- overhead ----------------------------------------------------------------------------------
def overhead(steps: int = 20, repeats: int = 20, rounds: int = 15):
    from diffusers import DPMSolverMultistepScheduler

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    x = torch.randn(64, 2)
    path = AffinePath("ddpm")

    def net(x, t):
        return 0.5 * x

    field = FunctionField(lambda x, t: net(x, t), path, "eps")

    def ours():
        ts = make_grid(path, steps, "log_snr")
        return sample_path(field, x.shape, x_init=x, sampler="dpmpp_2m", grid=ts).x

    sched_kw = {"beta_schedule": "linear", "solver_order": 2, "algorithm_type": "dpmsolver++"}

    def theirs():
        s = DPMSolverMultistepScheduler(**sched_kw)
        s.set_timesteps(steps)
        lat = x
        for t in s.timesteps:
            lat = s.step(net(lat, t), t, lat).prev_sample
        return lat

    def network_only():
        y = x
        for _ in range(steps):
            y = net(y, 0.0)
        return y

    def cold():  # the grid and its schedule values recomputed, as diffusers' set_timesteps is
        timesteps._cached_grid.cache_clear()
        timesteps._cached_values.cache_clear()
        return ours()

    fns = {"net": network_only, "ours": ours, "cold": cold, "theirs": theirs}
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()
    for _ in range(rounds):  # interleaved rounds, best of each: robust on a shared machine
        for key, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            best[key] = min(best[key], (time.perf_counter() - t0) / repeats)
    net_t = best["net"]
    a, c, b = (best[k] - net_t for k in ("ours", "cold", "theirs"))
    print("\n## Overhead per step, excluding the network (batch 64x2, float32, one thread)")
    print(f"probpath dpmpp_2m (grid memoised)    {a / steps * 1e6:8.1f} us/step")
    print(f"probpath dpmpp_2m (grid recomputed)  {c / steps * 1e6:8.1f} us/step")
    print(f"diffusers DPMSolverMultistep 2M      {b / steps * 1e6:8.1f} us/step")
    print(f"ratio memoised {a / b:6.3f}, recomputed {c / b:6.3f} (goal <= 0.25)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()
    if not args.skip_accuracy:
        accuracy(show_all=True)
    if not args.skip_overhead:
        overhead()
