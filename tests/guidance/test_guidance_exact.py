"""Guidance against the exact class-conditional Gaussian-mixture oracle (float64).

Setup: four 2-D components grouped into three classes (``classes = [0, 0, 1, 2]``), so class 0
is itself a two-component mixture. Every expected value is a closed form of the mixture:

* ``p_t(x | c)`` is the mixture of class ``c``'s components with weights renormalised within
  the class (an independent :class:`GaussianMixtureOracle` built from those components);
* classifier-free guidance of weight ``w`` has score ``(1 + w) grad log p_t(x | c) - w grad log
  p_t(x)``, which we take from autograd of the oracle's exact log-densities;
* Bayes: ``grad log p_t(x | c) = grad log p_t(x) + grad log p(c | x_t)``.

Tolerances: all quantities are float64 closed forms of size O(1..10) on these points; the
conversions between prediction kinds divide by ``sigma_t >= 0.2`` or ``alpha_t >= 0.2`` (times
chosen so), so round-off is below ~1e-13; we assert ``atol = 1e-10`` (1000x margin, far below
any modelling error, which would be O(0.1)).
"""

from __future__ import annotations

import pytest
import torch

from probpath.paths.affine import AffinePath
from probpath.paths.field import FunctionField
from probpath.paths.oracle import ClassConditionalOracle, GaussianMixtureOracle
from probpath.sampling.guidance import (
    ClassifierFreeGuidance,
    ClassifierGuidance,
    NoisyClassifier,
    fit_classifier,
    format_nfe,
)
from probpath.sampling.samplers import sample_path

DT = torch.float64
ATOL = 1e-10
W = torch.tensor([0.2, 0.3, 0.25, 0.25], dtype=DT)
MU = torch.tensor([[-2.0, 0.0], [-1.0, 1.5], [2.0, 0.5], [0.5, -2.0]], dtype=DT)
COV = torch.stack(
    [
        torch.tensor([[0.3, 0.1], [0.1, 0.2]], dtype=DT),
        0.15 * torch.eye(2, dtype=DT),
        torch.tensor([[0.4, -0.1], [-0.1, 0.25]], dtype=DT),
        0.2 * torch.eye(2, dtype=DT),
    ]
)
CLASSES = [0, 0, 1, 2]
KINDS = ["eps", "x0", "v", "velocity", "score"]


def _oracle(schedule="vp"):
    return ClassConditionalOracle(W, MU, COV, CLASSES, path=AffinePath(schedule))


def _points(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 2.0 * torch.randn(n, 2, generator=g, dtype=DT)
    # times where alpha_t, sigma_t >= 0.2 on the VP and linear paths (no division blows up)
    t = 0.15 + 0.7 * torch.rand(n, generator=g, dtype=DT)
    cond = torch.arange(n) % 3
    return x, t, cond


def _native(oracle, kind):
    """The oracle re-expressed as a field whose native prediction is ``kind``."""
    return FunctionField(
        lambda x, t, c=None: oracle.predict(x, t, as_=kind, cond=c), oracle.path, kind
    )


def _grad_log_p(oracle, x, t, cond):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(oracle.log_prob(x, t, cond).sum(), x)
    return g


@pytest.mark.parametrize("c", [0, 1, 2])
def test_class_conditional_field_is_the_class_mixture(c):
    # expected: the oracle of class c's components alone, weights renormalised in the class
    oracle = _oracle()
    keep = torch.tensor(CLASSES) == c
    alone = GaussianMixtureOracle(W[keep], MU[keep], COV[keep], path=oracle.path)
    x, t, _ = _points()
    cond = torch.full((len(x),), c)
    for kind in KINDS:
        got = oracle.predict(x, t, as_=kind, cond=cond)
        assert torch.allclose(got, alone.predict(x, t, as_=kind), atol=ATOL, rtol=0)
    lp = alone.log_prob(x, t)
    assert torch.allclose(oracle.log_prob(x, t, cond), lp, atol=ATOL, rtol=0)


def test_null_label_is_the_unconditional_mixture():
    oracle = _oracle()
    full = GaussianMixtureOracle(W, MU, COV, path=oracle.path)
    x, t, _ = _points()
    null = torch.full((len(x),), oracle.num_classes)
    assert torch.allclose(oracle.score(x, t, null), full.score(x, t), atol=ATOL, rtol=0)
    assert torch.allclose(oracle.score(x, t), full.score(x, t), atol=ATOL, rtol=0)


@pytest.mark.parametrize("schedule", ["vp", "linear"])
@pytest.mark.parametrize("w", [0.0, 0.5, 2.0])
def test_cfg_equals_score_of_tilted_density_in_every_kind(schedule, w):
    # expected score of p_t(x|c)^(1+w) p_t(x)^(-w): (1 + w) grad log p_t(x|c) - w grad log p_t(x)
    oracle = _oracle(schedule)
    x, t, cond = _points()
    expected = (1 + w) * _grad_log_p(oracle, x, t, cond) - w * _grad_log_p(oracle, x, t, None)
    for kind in KINDS:
        guided = ClassifierFreeGuidance(_native(oracle, kind), w, oracle.num_classes)
        got = guided.predict(x, t, as_="score", cond=cond)
        assert torch.allclose(got, expected, atol=ATOL, rtol=0), kind


def test_cfg_kinds_agree_as_velocity():
    oracle = _oracle("linear")
    x, t, cond = _points()
    outs = [
        ClassifierFreeGuidance(_native(oracle, k), 1.5, 3).predict(x, t, "velocity", cond)
        for k in KINDS
    ]
    for out in outs[1:]:
        assert torch.allclose(out, outs[0], atol=ATOL, rtol=0)


def test_classifier_guidance_with_exact_posterior_is_the_conditional_score():
    # Bayes: grad log p_t(x | c) = grad log p_t(x) + grad log p(c | x_t)  (scale 1)
    oracle = _oracle()
    x, t, cond = _points()
    guided = ClassifierGuidance(oracle, oracle.class_log_posterior, scale=1.0)
    got = guided.predict(x, t, as_="score", cond=cond)
    assert torch.allclose(got, oracle.score(x, t, cond), atol=ATOL, rtol=0)
    x0_hat, _ = guided.x0_eps(x, t, cond)
    assert torch.allclose(x0_hat, oracle.predict(x, t, "x0", cond=cond), atol=ATOL, rtol=0)


def test_class_posterior_sums_to_one_and_matches_bayes():
    oracle = _oracle()
    x, t, _ = _points()
    logpost = oracle.class_log_posterior(x, t)
    assert torch.allclose(logpost.exp().sum(1), torch.ones(len(x), dtype=DT), atol=ATOL)
    # log p(c | x) = log p(x | c) + log p(c) - log p(x), every term exact
    prior = oracle.class_prior()[:3]
    for c in range(3):
        cond = torch.full((len(x),), c)
        bayes = oracle.log_prob(x, t, cond) + prior[c].log() - oracle.log_prob(x, t)
        assert torch.allclose(logpost[:, c], bayes, atol=ATOL, rtol=0)


class CountingNet:
    """Records the batch size of every call of the wrapped oracle prediction."""

    def __init__(self, oracle):
        self.oracle, self.batches = oracle, []

    def __call__(self, x, t, c=None):
        self.batches.append(len(x))
        return self.oracle.predict(x, t, as_="eps", cond=c)


def test_one_batched_pass_and_nfe_times_two():
    oracle = _oracle()
    net = CountingNet(oracle)
    guided = ClassifierFreeGuidance(FunctionField(net, oracle.path, "eps"), 1.0, 3)
    n, steps = 6, 8
    out = sample_path(
        guided,
        (n, 2),
        sampler="dpmpp_2m",
        steps=steps,
        cond=torch.arange(n) % 3,
        generator=torch.Generator().manual_seed(0),
        dtype=DT,
    )
    assert set(net.batches) == {2 * n}  # conditional + unconditional in one forward of 2B
    assert guided.network_passes == 2 * out.nfe == 2 * len(net.batches)
    assert format_nfe(out.nfe, guided.network_passes) == f"{out.nfe}×2"


def test_guidance_interval_and_zero_weight():
    oracle = _oracle()
    x, _, cond = _points()
    cond_field = oracle.predict(x, 0.5, "eps", cond=cond)
    level = float(
        oracle.path(torch.tensor(0.5, dtype=DT)).sigma
        / oracle.path(torch.tensor(0.5, dtype=DT)).alpha
    )
    outside = ClassifierFreeGuidance(
        _native(oracle, "eps"), 3.0, 3, interval=(level + 1, level + 2)
    )
    assert torch.allclose(outside.predict(x, 0.5, "eps", cond), cond_field, atol=ATOL, rtol=0)
    assert outside.network_passes == 1
    inside = ClassifierFreeGuidance(_native(oracle, "eps"), 3.0, 3, interval=(0.0, level + 1))
    plain = ClassifierFreeGuidance(_native(oracle, "eps"), 3.0, 3)
    want = plain.predict(x, 0.5, "eps", cond)
    assert torch.allclose(inside.predict(x, 0.5, "eps", cond), want, atol=ATOL, rtol=0)
    zero = ClassifierFreeGuidance(_native(oracle, "eps"), 0.0, 3)
    assert torch.allclose(zero.predict(x, 0.5, "eps", cond), cond_field, atol=ATOL, rtol=0)


def test_rescale_matches_conditional_std():
    # phi = 1: each guided output has exactly the per-sample std of the conditional output
    oracle = _oracle()
    x, _, cond = _points()
    f_c = oracle.predict(x, 0.5, "eps", cond=cond)
    out = ClassifierFreeGuidance(_native(oracle, "eps"), 4.0, 3, rescale=1.0).evaluate(
        x, torch.full((len(x),), 0.5, dtype=DT), cond
    )
    assert torch.allclose(out.std(1), f_c.std(1), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight": float("nan")}, "finite"),
        ({"interval": (2.0, 1.0)}, "interval"),
        ({"rescale": 2.0}, "rescale"),
    ],
)
def test_bad_options(kwargs, match):
    oracle = _oracle()
    args = {"weight": 1.0} | kwargs
    with pytest.raises(ValueError, match=match):
        ClassifierFreeGuidance(oracle, args.pop("weight"), 3, **args)


def test_guidance_without_labels_is_a_clear_error():
    oracle = _oracle()
    x, t, _ = _points()
    with pytest.raises(ValueError, match="labels"):
        ClassifierFreeGuidance(oracle, 1.0, 3).predict(x, t, "eps")
    with pytest.raises(ValueError, match="labels"):
        ClassifierGuidance(oracle, oracle.class_log_posterior).predict(x, t, "eps")


def test_fit_classifier_learns_the_class_posterior():
    # A short fit must be closer (mean KL) to the exact p(c | x_t) than the best constant
    # classifier, the class prior p(c); exact posterior from the oracle.
    oracle = _oracle()
    g = torch.Generator().manual_seed(0)
    k = torch.multinomial(W, 2000, replacement=True, generator=g)
    x = (
        MU[k]
        + torch.einsum(
            "nij,nj->ni", torch.linalg.cholesky(COV)[k], torch.randn(2000, 2, generator=g, dtype=DT)
        )
    ).float()
    y = torch.tensor(CLASSES)[k]
    clf = fit_classifier(oracle.path, x, y, steps=300, hidden=(32, 32), generator=g)
    assert isinstance(clf, NoisyClassifier)
    xt, t, _ = _points(200, seed=1)
    exact = oracle.class_log_posterior(xt, t)
    with torch.no_grad():
        learned = torch.log_softmax(clf(xt.float(), t.float()).double(), 1)
    prior = oracle.class_prior()[:3].log().expand_as(exact)

    def kl(q):
        return float((exact.exp() * (exact - q)).sum(1).mean())

    assert kl(learned) < 0.5 * kl(prior)


def test_path_model_classifier_guidance_option():
    # An unconditional path model whose network is the exact unconditional oracle (eps): with
    # the exact class posterior as classifier, its guided prediction is the exact conditional
    # one (Bayes), so the sampler's output equals sampling the conditional oracle directly
    # (same noise; 8 float64 steps on O(1) values: round-off ~1e-13, atol 1e-9).
    from torch import nn

    from probpath.sampling.path_model import PathModel

    oracle = _oracle()

    class Net(nn.Module):
        num_classes = 0

        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros((), dtype=DT))

        def forward(self, x, t, cond=None):
            return oracle.predict(x, t, as_="eps") + 0 * self.dummy

    model = PathModel((2,), oracle.path, "eps", Net(), sampler="dpmpp_2m", steps=8).double()
    cond = torch.arange(6) % 3
    opts = {"classifier": oracle.class_log_posterior}
    gen = torch.Generator().manual_seed(0)
    x = model.sample(6, cond=cond, generator=gen, guidance_options=opts)
    gen = torch.Generator().manual_seed(0)
    grid = model.grid_defaults("dpmpp_2m", 8)  # the model's own grid, as sample() uses
    want = sample_path(
        oracle, (6, 2), sampler="dpmpp_2m", steps=8, cond=cond, generator=gen, dtype=DT, **grid
    ).x
    assert torch.allclose(x, want, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="not both"):
        model.sample(2, cond=cond[:2], guidance=1.0, guidance_options=opts)
