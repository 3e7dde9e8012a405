"""CFM / OT-CFM training step and minibatch OT coupling: probpath vs torchcfm (issue §7).

Both sides train the same network (probpath's ``TimeMLP``, identical initial weights) with
Adam on the same batches; only the objective code differs: probpath's ``FlowMatching.loss``
(Eq. 62 through the shared ``AffinePath`` / ``PathField``) versus torchcfm's
``ConditionalFlowMatcher.sample_location_and_conditional_flow`` + an MSE. Blocks of steps are
interleaved (A, B, A, B, ...) and the median time per step is reported, with the ratio
probpath / torchcfm (< 1: probpath faster). The OT coupling is timed alone too:
``probpath.velocity.ot_coupling`` (exact, Hungarian assignment) versus torchcfm's
``OTPlanSampler(method="exact").sample_plan`` (POT network simplex, then resampling).

A consistency check first shows that both compute the same loss on the same draws after the
time flip (torchcfm's ``t`` runs noise -> data; probpath's ``1 - t``, velocity negated).

Run:  .venv/bin/python benchmarks/bench_cfm.py [--threads 1] [--steps 100] [--repeats 5]
Needs the ``bench`` extra (``pip install torchcfm``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from probpath.nn import TimeMLP
from probpath.velocity import FlowMatching, ot_coupling

__all__ = ["main"]


def _net(dim: int, hidden: list[int], seed: int) -> TimeMLP:
    torch.manual_seed(seed)
    return TimeMLP(dim, hidden=hidden)


def _data(dim: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dim == 2:
        from probpath.data import make_toy

        return make_toy("moons", n, generator=g)
    centers = torch.randn(8, dim, generator=g) * 2
    return centers[torch.randint(0, 8, (n,), generator=g)] + 0.3 * torch.randn(n, dim, generator=g)


def consistency(dim: int = 2, n: int = 512) -> float:
    """Max |probpath loss - torchcfm loss| on the same (x0, eps, t) and the same network."""
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

    x1 = _data(dim, n, 0)
    eps = torch.randn_like(x1)
    t_cfm = torch.rand(n)
    net = _net(dim, [64, 64], 0)
    # torchcfm: x0 = noise, x1 = data, t = 0 noise; network called in probpath time 1 - t
    _, xt, ut = ConditionalFlowMatcher(0.0).sample_location_and_conditional_flow(eps, x1, t_cfm)
    ref = ((-net(xt, 1 - t_cfm) - ut) ** 2).mean(1)
    model = FlowMatching((dim,), network={"hidden": [64, 64]})
    model.network.load_state_dict(net.state_dict())
    from probpath.velocity import cfm_loss

    ours = cfm_loss(model.field, x1, 1 - t_cfm, eps=eps)
    return float((ours - ref).abs().max().detach())


def _time_blocks(fns: dict, steps: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each fn, blocks of ``steps`` calls interleaved."""
    for fn in fns.values():  # warm-up
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - t0) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def training_steps(dim, batch, hidden, steps, repeats, coupling):
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )

    data = _data(dim, 20_000, 1)
    model = FlowMatching((dim,), coupling=coupling, network={"hidden": hidden})
    model.network.load_state_dict(_net(dim, hidden, 0).state_dict())
    ref_net = _net(dim, hidden, 0)
    opt_a = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt_b = torch.optim.Adam(ref_net.parameters(), lr=1e-3)
    fm = ExactOptimalTransportConditionalFlowMatcher(0.0) if coupling == "ot" else None
    fm = fm or ConditionalFlowMatcher(0.0)
    g = torch.Generator().manual_seed(2)

    def batch_x():
        return data[torch.randint(0, len(data), (batch,), generator=g)]

    def probpath_step():
        loss = model.loss(batch_x()).mean()
        opt_a.zero_grad(set_to_none=True)
        loss.backward()
        opt_a.step()

    def torchcfm_step():
        x1 = batch_x()
        t, xt, ut = fm.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
        loss = ((ref_net(xt, t) - ut) ** 2).mean()
        opt_b.zero_grad(set_to_none=True)
        loss.backward()
        opt_b.step()

    return _time_blocks({"probpath": probpath_step, "torchcfm": torchcfm_step}, steps, repeats)


def coupling_only(dim, batch, steps, repeats):
    from torchcfm.optimal_transport import OTPlanSampler

    sampler = OTPlanSampler(method="exact")
    data = _data(dim, 20_000, 1)
    g = torch.Generator().manual_seed(3)

    def draw():
        return data[torch.randint(0, len(data), (batch,), generator=g)], torch.randn(batch, dim)

    def ours():
        ot_coupling(*draw())

    def theirs():
        sampler.sample_plan(*draw())

    return _time_blocks({"probpath": ours, "torchcfm": theirs}, steps, repeats)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--dims", default="2,64")
    p.add_argument("--hidden", default="256,256,256")
    p.add_argument("--steps", type=int, default=100, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="interleaved blocks per side")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    hidden = [int(h) for h in args.hidden.split(",")]
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
        f"TimeMLP hidden {hidden}; median seconds per step over {args.repeats} blocks"
    )
    print(f"consistency: max |loss difference| = {consistency():.2e} (same draws, same net)")
    print(f"{'work':<26}{'dim':>4}{'probpath ms':>13}{'torchcfm ms':>13}{'ratio':>8}")
    for dim in (int(d) for d in args.dims.split(",")):
        rows = [
            (
                "CFM training step",
                training_steps(dim, args.batch, hidden, args.steps, args.repeats, "independent"),
            ),
            (
                "OT-CFM training step",
                training_steps(
                    dim, args.batch, hidden, max(args.steps // 4, 5), args.repeats, "ot"
                ),
            ),
            (
                "OT coupling only",
                coupling_only(dim, args.batch, max(args.steps // 4, 5), args.repeats),
            ),
        ]
        for name, r in rows:
            a, b = r["probpath"] * 1e3, r["torchcfm"] * 1e3
            print(f"{name:<26}{dim:>4}{a:>13.3f}{b:>13.3f}{a / b:>8.2f}")


if __name__ == "__main__":
    main()
