"""One battery over every model in the catalog (DESIGN.md, "Testing").

Each model is built with its entry's tiny ``test_kwargs`` on 2-D data (vector models) or
1x8x8 images (image models), then checked for: loss shape and gradients, sample shape and
seeded reproducibility, save/load round trip, log_prob shape/finiteness (and normalisation
on a grid for exact 2-D densities), and clear errors for bad input.
"""

from __future__ import annotations

import math

import pytest
import torch

import probpath
from probpath.catalog import CATALOG, build_model
from probpath.core.model import draw

ENTRIES = list(CATALOG)
IDS = [e.name for e in ENTRIES]


def _shape(entry):
    return {"image": (1, 8, 8), "binary": (6,), "count": (6,)}.get(entry.data, (2,))


def _data(shape, n=64, seed=0, kind="vector"):
    g = torch.Generator().manual_seed(seed)
    if kind == "binary":  # two prototypes with flipped bits
        proto = torch.randint(0, 2, (n,), generator=g)[:, None].float()
        return (torch.rand(n, *shape, generator=g) < 0.2 + 0.6 * proto).float()
    if kind == "count":
        rate = 1.0 + 4.0 * torch.randint(0, 2, (n,), generator=g)[:, None].float()
        return torch.poisson(rate.expand(n, *shape).contiguous(), generator=g)
    if len(shape) == 1:  # two well-separated blobs
        c = torch.randint(0, 2, (n,), generator=g).float()[:, None] * 3.0 - 1.5
        return torch.randn(n, *shape, generator=g) * 0.5 + c
    return torch.rand(n, *shape, generator=g) * 2 - 1


def _labels(n, seed=0):
    return torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=ENTRIES, ids=IDS)
def fitted(request):
    """A small model of each catalog entry, fitted (estimators) or trained for a few steps."""
    entry = request.param
    shape = _shape(entry)
    caps = entry.cls.capabilities
    torch.manual_seed(0)
    model = build_model(entry, shape, 3 if caps.conditional else None, test=True)
    x = _data(shape, kind=entry.data)
    cond = _labels(len(x)) if caps.conditional else None
    if caps.estimator:
        model.fit(x.double())
        x = x.double()
    else:
        model.to(torch.float32)
        _train_a_little(model, x, cond)
    return entry, model, x, cond


def _train_a_little(model, x, cond, steps=3):
    """A few Adam steps, as the Trainer would take (also runs data-dependent inits)."""
    groups = model.optimizer_groups()
    opts = {k: torch.optim.Adam(g.params, lr=1e-3) for k, g in groups.items()}

    def update(loss, group):
        opts[group].zero_grad()
        loss.backward()
        opts[group].step()

    model.train()
    for step in range(steps):
        if hasattr(model, "train_step"):
            model.train_step(x, cond, step, update)
        else:
            update(model.loss(x, cond).mean(), "model")
    for opt in opts.values():
        opt.zero_grad(set_to_none=True)
    model.eval()


def _cond(model, n):
    return _labels(n, seed=1) if model.capabilities.conditional else None


def test_capabilities_declared(fitted):
    entry, model, _, _ = fitted
    caps = model.capabilities
    assert isinstance(caps, probpath.Capabilities)
    assert caps.route in {"likelihood", "score", "velocity", "adversarial"}
    assert caps.section.startswith("§")
    assert isinstance(model, probpath.GenerativeModel)


def test_loss_shape_and_gradients(fitted):
    entry, model, x, cond = fitted
    if model.capabilities.estimator:
        loss = model.loss(x)
        assert loss.shape == (len(x),)
        assert torch.isfinite(loss).all()
        return
    if hasattr(model, "train_step"):
        touched: set[int] = set()

        def update(loss, group):
            assert loss.ndim == 0 and torch.isfinite(loss)
            params = model.optimizer_groups()[group].params
            loss.backward()
            touched.update(id(p) for p in params if p.grad is not None and p.grad.abs().sum() > 0)
            model.zero_grad(set_to_none=True)

        model.train_step(x, cond, 0, update)
        every = {id(p) for g in model.optimizer_groups().values() for p in g.params}
        assert every <= touched, "some parameters got no gradient from train_step"
        return
    loss = model.loss(x, cond)
    assert loss.shape == (len(x),), "loss must be per-sample, shape (batch,)"
    assert torch.isfinite(loss).all()
    loss.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing[:5]}"


def test_sample_shape_and_seeded(fitted):
    entry, model, x, _ = fitted
    n = 5
    with torch.no_grad():
        a = draw(model, n, cond=_cond(model, n), generator=torch.Generator().manual_seed(3))
        b = draw(model, n, cond=_cond(model, n), generator=torch.Generator().manual_seed(3))
    assert a.shape == (n, *x.shape[1:])
    assert torch.isfinite(a).all()
    assert torch.equal(a, b), "the same generator seed must give the same samples"


def test_save_load_round_trip(fitted, tmp_path):
    entry, model, x, cond = fitted
    model.save(tmp_path / "m")
    loaded = probpath.load(tmp_path / "m")
    assert type(loaded) is type(model)
    if not model.capabilities.estimator:
        model.eval()
        for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert k == k2 and torch.equal(v, v2.to(v.dtype))
    with torch.no_grad():
        s1 = draw(model, 4, cond=_cond(model, 4), generator=torch.Generator().manual_seed(1))
        s2 = draw(loaded, 4, cond=_cond(loaded, 4), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s1, s2.to(s1.dtype))


def test_log_prob(fitted):
    entry, model, x, cond = fitted
    caps = model.capabilities
    xs = x[:8]
    c = None if cond is None else cond[:8]
    if caps.likelihood_kind == "none":
        with pytest.raises(NotImplementedError, match=r"\w{4,}"):
            model.log_prob(xs, c) if c is not None else model.log_prob(xs)
        return
    with torch.no_grad():
        lp = model.log_prob(xs, c) if c is not None else model.log_prob(xs)
    assert lp.shape == (8,)
    assert torch.isfinite(lp).all()


def test_exact_density_normalised_on_grid(fitted):
    """An exact 2-D density integrates to 1: its grid integral over the box ``[-6, 6]^2``
    equals the model's own probability of the box.

    * The grid sum with weight ``h^2`` at every node is the trapezoid rule (the density is
      ~0 on the edges), error ``O(h^2)``: the sum on every other node (``2h``) differs by about
      three times that error, so ``|S_h - S_2h| / 3`` estimates it (Richardson); allow twice.
    * ``P(box) = 1 - P(outside)``, with ``P(outside)`` the fraction of ``n`` model samples
      outside the box (ODE sampling for path models: the same flow as ``log_prob``); binomial
      standard error ``sqrt(p (1 - p) / n)`` (at least that of one sample), allow 5.
    * ``log_prob`` through a probability-flow ODE (path models) carries dopri5's error at
      ``rtol = atol = 1e-5``, which bounds only loosely a priori (errors in ``x`` feed the
      divergence and grow like ``exp(L t)`` with the field's Lipschitz constant ``L``, large
      for a barely trained eps-network near ``t = 1``). It is measured: the nodes carrying
      all but ``1e-4 max(w)`` per node of the mass are solved again by fixed-step RK4 with
      200 steps (same ODE, error ``O(h^4)``); twice the mass difference, plus the mass of the
      other nodes, is the solver term (measured: up to 4e-3 for ScoreSDE).
    * The densities are summed in float64 (float32 log-probs: relative error ~1e-6).
    """
    entry, model, x, cond = fitted
    caps = model.capabilities
    if not caps.exact_log_prob or x.shape[1:] != (2,) or caps.conditional:
        pytest.skip("only for exact, unconditional 2-D densities")
    lim, m, chunk = 6.0, 121, 4096
    g = torch.linspace(-lim, lim, m, dtype=x.dtype)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    h = 2 * lim / (m - 1)
    with torch.no_grad():
        lp = torch.cat([model.log_prob(part) for part in pts.split(chunk)]).double()
    dens = lp.exp().reshape(m, m)
    mass = dens.sum().item() * h**2
    solver = 0.0
    if hasattr(model, "field"):  # probability-flow ODE: re-solve the heavy nodes by RK4
        w = dens.reshape(-1) * h**2
        heavy = w >= 1e-4 * w.max()
        model.likelihood_steps = 200
        with torch.no_grad():
            lp_rk4 = torch.cat([model.log_prob(p) for p in pts[heavy].split(chunk)]).double()
        diff = (w[heavy] - lp_rk4.exp() * h**2).sum().item()
        solver = 2 * abs(diff) + w[~heavy].sum().item()
    quadrature = abs(mass - dens[::2, ::2].sum().item() * (2 * h) ** 2) / 3
    n = 20_000
    opts = {"sampler": "adaptive"} if hasattr(model, "field") else {}
    with torch.no_grad():
        s = draw(model, n, generator=torch.Generator().manual_seed(1), **opts)
    p_out = (s.abs() > lim).any(1).double().mean().item()
    se = max(math.sqrt(p_out * (1 - p_out) / n), 1 / n)
    tol = 5 * se + 2 * quadrature + solver + 1e-6
    assert abs(mass - (1 - p_out)) <= tol, (mass, 1 - p_out, tol)


def test_bad_input_errors(fitted):
    entry, model, x, cond = fitted
    bad = x.clone()
    bad[0].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.loss(bad, cond)
    wrong = torch.zeros(4, *[s + 1 for s in x.shape[1:]], dtype=x.dtype)
    with pytest.raises(ValueError, match="shape"):
        model.loss(wrong, None if cond is None else cond[:4])
    with pytest.raises(ValueError, match="n"):
        draw(model, 0)
