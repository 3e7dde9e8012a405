"""Hierarchical VAE, flow-posterior VAE (Eq. 53–54), VQ-VAE, and the latent-space helpers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from probpath.likelihood.vae import (
    VAE,
    VQVAE,
    CodePrior,
    FlowVAE,
    HierarchicalVAE,
    VectorQuantizer,
    latent_interpolation,
    latent_traversal,
)
from probpath.likelihood.vae.common import gaussian_log_prob

F64 = torch.float64


def _x(n=12, dim=3, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


# -- hierarchical VAE --------------------------------------------------------------------------
# A two-layer *linear-Gaussian* hierarchical VAE: every activation replaced by the identity and
# the prior's log-variance head made constant, so the generative model is
#   z_2 ~ N(0, I),  z_1 | z_2 ~ N(A z_2 + a, V),  x | z_1 ~ N(W z_1 + c, sig^2 I)
# with V = diag(v), and
#   p(x) = N(W a + c, W (A A^T + V) W^T + sig^2 I)                                   (closed form).
# The exact posterior factorises top-down like the model's q:
#   p(z_1 | x, z_2) = N(L1^{-1} (V^{-1} (A z_2 + a) + W^T (x - c) / sig^2), L1^{-1}),
#       L1 = V^{-1} + W^T W / sig^2;
#   p(z_2 | x) = N(L2^{-1} A^T W^T C^{-1} (x - W a - c), L2^{-1}),
#       C = W V W^T + sig^2 I,  L2 = I + A^T W^T C^{-1} W A.
# Both precisions are diagonal when W = U diag(s) (orthonormal U) and A is a rectangular
# diagonal (W^T C^{-1} W = diag(s^2 / (s^2 v + sig^2))), so the model's diagonal-Gaussian
# q(z_2|x) q(z_1|x, z_2), whose means are affine in (x, z_2), can equal the exact posterior.
HD, HD1, HD2, HWIDTH, HSIG = 4, 3, 2, 8, 0.5


def _linear_hvae(seed=0):
    """The linear HVAE above (up-pass weights left random) and its generative parameters."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = HierarchicalVAE(
        (HD,), latent_dims=(HD1, HD2), width=HWIDTH, hidden=(), decoder_std=HSIG
    ).to(F64)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.SiLU):
                setattr(module, name, torch.nn.Identity())
    A = torch.zeros(HD1, HD2, dtype=F64)
    A[:HD2] = torch.diag(torch.tensor([1.5, -0.8], dtype=F64))
    a = torch.randn(HD1, generator=g, dtype=F64)
    v = torch.tensor([0.3, 0.5, 0.8], dtype=F64)
    U = torch.linalg.qr(torch.randn(HD, HD1, generator=g, dtype=F64))[0]
    W = U * torch.tensor([2.0, 1.0, 0.7], dtype=F64)
    c = torch.randn(HD, generator=g, dtype=F64)
    with torch.no_grad():
        down, head = model.down[0][0][0], model.prior_heads[0]
        down.weight.zero_()
        down.weight[:HD2] = torch.eye(HD2, dtype=F64)  # state = (z_2, 0)
        down.bias.zero_()
        head.weight.zero_()
        head.weight[:HD1, :HD2] = A
        head.bias.copy_(torch.cat([a, v.log()]))
        first, last = model.decoder[0][0], model.decoder[0][2]
        first.weight.zero_()
        first.weight[:HD1] = torch.eye(HD1, dtype=F64)
        first.bias.zero_()
        last.weight.zero_()
        last.weight[:, :HD1] = W
        last.bias.copy_(c)
    return model, {"A": A, "a": a, "v": v, "W": W, "c": c}


def _hvae_marginal(p):
    cov = p["W"] @ (p["A"] @ p["A"].T + torch.diag(p["v"])) @ p["W"].T
    return MultivariateNormal(p["W"] @ p["a"] + p["c"], cov + HSIG**2 * torch.eye(HD, dtype=F64))


def _hvae_posterior(p):
    """The exact posterior as (M2, m2, var2, F, R, r, var1): z_2 | x ~ N(M2 x + m2, var2),
    z_1 | x, z_2 ~ N(F z_2 + R x + r, var1) (diagonal variances, checked)."""
    A, a, v, W, c = p["A"], p["a"], p["v"], p["W"], p["c"]
    L1 = torch.diag(1 / v) + W.T @ W / HSIG**2
    C = W @ torch.diag(v) @ W.T + HSIG**2 * torch.eye(HD, dtype=F64)
    L2 = torch.eye(HD2, dtype=F64) + A.T @ W.T @ torch.linalg.solve(C, W @ A)
    for L in (L1, L2):  # the construction above makes both precisions diagonal
        torch.testing.assert_close(L, torch.diag(L.diagonal()), rtol=0, atol=1e-12)
    cov1 = torch.linalg.inv(L1)
    M2 = torch.linalg.solve(L2, A.T @ W.T @ torch.linalg.inv(C))
    return {
        "M2": M2,
        "m2": -M2 @ (W @ a + c),
        "var2": 1 / L2.diagonal(),
        "F": cov1 @ torch.diag(1 / v) @ A,
        "R": cov1 @ W.T / HSIG**2,
        "r": cov1 @ (a / v - W.T @ c / HSIG**2),
        "var1": cov1.diagonal(),
    }


def _affine_probe(fn, dim):
    """``(B, beta)`` of an affine map ``fn(x) = B x + beta`` from ``dim + 1`` evaluations."""
    with torch.no_grad():
        beta = fn(torch.zeros(1, dim, dtype=F64))[0]
        B = fn(torch.eye(dim, dtype=F64)) - beta
    return B.T, beta


def _set_hvae_encoder(model, p, q):
    """Make the model's top-down q equal ``q`` (same keys as :func:`_hvae_posterior`)."""
    B1, beta1 = _affine_probe(model.up[0], HD)
    B, beta = _affine_probe(lambda x: model.up[1](model.up[0](x)), HD)
    top = q["M2"] @ torch.linalg.pinv(B)  # the up-pass has full column rank HD <= HWIDTH
    Qh = q["R"] @ torch.linalg.pinv(B1)
    with torch.no_grad():
        qt, post = model.q_top, model.post_heads[0]
        qt.weight.zero_()
        qt.weight[:HD2] = top
        qt.bias.copy_(torch.cat([q["m2"] - top @ beta, q["var2"].log()]))
        # mu_q = (A z_2 + a) + d_mu with d_mu = Qh h_1 + Qs state + b; log var_q = log v + d_lv
        post.weight.zero_()
        post.weight[:HD1, :HWIDTH] = Qh
        post.weight[:HD1, HWIDTH : HWIDTH + HD2] = q["F"] - p["A"]
        post.bias.copy_(torch.cat([q["r"] - p["a"] - Qh @ beta1, q["var1"].log() - p["v"].log()]))


def _joint(q, x):
    """``q(z_2, z_1 | x)`` as one Gaussian over ``(z_2, z_1)``, batched over ``x``."""
    m2 = x @ q["M2"].T + q["m2"]
    m1 = m2 @ q["F"].T + x @ q["R"].T + q["r"]
    S2, S1 = torch.diag(q["var2"]), torch.diag(q["var1"])
    cov = torch.cat(
        [
            torch.cat([S2, S2 @ q["F"].T], 1),
            torch.cat([q["F"] @ S2, q["F"] @ S2 @ q["F"].T + S1], 1),
        ]
    )
    return MultivariateNormal(torch.cat([m2, m1], 1), cov)


def _distorted(q):
    """An encoder off the exact posterior in every coefficient it has."""
    out = dict(q)
    out["m2"] = q["m2"] + torch.tensor([0.3, -0.2], dtype=F64)
    out["var2"] = q["var2"] * torch.tensor([2.0, 0.6], dtype=F64)
    out["F"] = q["F"] + 0.2
    out["r"] = q["r"] - 0.25
    out["var1"] = q["var1"] * 1.7
    return out


def test_hvae_log_weight_is_exact_at_the_true_posterior():
    """With q = p(z|x), every importance weight p(x, z) / q(z|x) equals p(x): each one-sample
    log-weight, the IWAE bound for any k and the ELBO's expectation are the closed-form
    log p(x). The first two hold draw by draw, so the tolerance is float64 round-off."""
    model, p = _linear_hvae()
    _set_hvae_encoder(model, p, _hvae_posterior(p))
    x = _hvae_marginal(p).sample((20,))
    exact = _hvae_marginal(p).log_prob(x)
    with torch.no_grad():
        lw = model.log_weight(x, generator=torch.Generator().manual_seed(1))
        iw = model.log_prob(x, k=5, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(lw, exact, rtol=0, atol=1e-10)
    torch.testing.assert_close(iw, exact, rtol=0, atol=1e-10)


def test_hvae_elbo_equals_log_likelihood_minus_posterior_kl():
    """Eq. (16) for the whole hierarchy: ELBO = log p(x) - KL(q(z_1, z_2|x) || p(z_1, z_2|x)),
    both joint Gaussians (closed form). The analytic-KL ELBO and the mean log-weight, each
    averaged over R draws, agree with it within 5 Monte-Carlo standard errors; the closed form
    is below log p(x) by more than that (the check can see the gap)."""
    model, p = _linear_hvae()
    q = _distorted(_hvae_posterior(p))
    _set_hvae_encoder(model, p, q)
    torch.manual_seed(3)
    x = _hvae_marginal(p).sample((6,))
    exact = _hvae_marginal(p).log_prob(x)
    closed = exact - kl_divergence(_joint(q, x), _joint(_hvae_posterior(p), x))
    R = 2000
    with torch.no_grad():
        for fn, seed in ((model.elbo, 4), (model.log_weight, 5)):
            reps = fn(x.repeat(R, 1), generator=torch.Generator().manual_seed(seed))
            reps = reps.reshape(R, len(x))
            est, se = reps.mean(0), reps.std(0) / math.sqrt(R)
            assert ((est - closed).abs() <= 5 * se).all(), (est - closed) / se
            assert (exact - closed > 5 * se).all()


def test_hvae_iwae_increases_with_k_below_log_likelihood():
    """E[IWAE_k] is non-decreasing in k and bounded by the closed-form log p(x) (Burda et al.,
    Thm 1): consecutive means of R replicates (summed over the batch) may not drop by more than
    4 standard errors of their difference; k = 64 beats k = 1 by more than 4; all stay below
    log p(x) + 4 s.e."""
    model, p = _linear_hvae()
    _set_hvae_encoder(model, p, _distorted(_hvae_posterior(p)))
    torch.manual_seed(6)
    x = _hvae_marginal(p).sample((5,))
    exact = _hvae_marginal(p).log_prob(x).sum()
    R = 200
    means, ses = [], []
    with torch.no_grad():
        for k in (1, 4, 16, 64):
            lp = model.log_prob(x.repeat(R, 1), k=k, generator=torch.Generator().manual_seed(k))
            per_rep = lp.reshape(R, len(x)).sum(1)
            means.append(per_rep.mean())
            ses.append(per_rep.std() / math.sqrt(R))
    for i in range(len(means) - 1):
        assert means[i + 1] > means[i] - 4 * math.hypot(ses[i], ses[i + 1])
    assert means[-1] - means[0] > 4 * math.hypot(ses[0], ses[-1])
    for m, se in zip(means, ses):
        assert m < exact + 4 * se


def test_hvae_three_layers_sample_and_need_two():
    torch.manual_seed(0)
    model = HierarchicalVAE((3,), latent_dims=(3, 2, 2), width=8, hidden=()).to(F64)
    assert model.sample(7, generator=torch.Generator().manual_seed(0)).shape == (7, 3)
    lp = model.log_prob(_x(5), k=4, generator=torch.Generator().manual_seed(0))
    assert lp.shape == (5,) and torch.isfinite(lp).all()
    with pytest.raises(ValueError, match="two layers"):
        HierarchicalVAE((3,), latent_dims=(4,))


def test_hvae_kl_has_one_column_per_latent_dimension():
    torch.manual_seed(0)
    model = HierarchicalVAE((3,), latent_dims=(4, 2), width=8, hidden=()).to(F64)
    rec, kl = model.elbo_terms(_x(6))
    assert rec.shape == (6,) and kl.shape == (6, 6) and (kl >= 0).all()


# -- flow posterior ----------------------------------------------------------------------------
def test_flow_posterior_log_density_is_change_of_variables():
    """log q_K(z_K) = log q_0(z_0) - log|det dz_K/dz_0| (Eq. 53), Jacobian by autograd, with
    the amortised (x-dependent) flow parameters."""
    torch.manual_seed(0)
    for flow in ("planar", "radial"):
        model = FlowVAE((3,), flow=flow, flow_length=3, latent_dim=3, hidden=(8,)).to(F64)
        for p in [*model.flows.parameters(), *model.flow_net.parameters()]:
            p.data.add_(0.3 * torch.randn_like(p))  # move away from the initialisation
        x = torch.randn(1, 3, dtype=F64)
        mu, log_var = model.encode(x)
        z_k, log_q, _, _ = model.q_sample(x, torch.Generator().manual_seed(4))
        z0 = mu + (0.5 * log_var).exp() * torch.randn(
            1, 3, generator=torch.Generator().manual_seed(4), dtype=F64
        )
        params = model.flow_params(x)

        def push(z, flows=model.flows, params=params):
            for f, p in zip(flows, params):
                z = f(z, p)[0]
            return z

        torch.testing.assert_close(push(z0), z_k)
        jac = torch.autograd.functional.jacobian(lambda z: push(z[None])[0], z0[0])
        expected = gaussian_log_prob(z0, mu, log_var).sum() - torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(log_q[0], expected)


def test_amortized_flow_parameters_depend_on_x():
    torch.manual_seed(0)
    model = FlowVAE((3,), flow="planar", flow_length=2, latent_dim=2, hidden=(8,)).to(F64)
    for p in model.flow_net.parameters():
        p.data.add_(0.3 * torch.randn_like(p))
    a, b = model.flow_params(torch.randn(2, 3, dtype=F64))[0][0]
    assert not torch.allclose(a, b)


def test_radial_flow_vae_at_identity_equals_plain_vae():
    """Radial maps start at the identity (beta = 0), so the flow VAE's IWAE bound equals the
    plain VAE's with the same networks and noise."""
    torch.manual_seed(0)
    vae = VAE((3,), latent_dim=2, hidden=(8,)).to(F64)
    fvae = FlowVAE((3,), flow="radial", flow_length=2, latent_dim=2, hidden=(8,)).to(F64)
    fvae.load_state_dict(vae.state_dict(), strict=False)
    x = _x(5)
    a = vae.log_prob(x, k=6, generator=torch.Generator().manual_seed(0))
    b = fvae.log_prob(x, k=6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)


# -- VQ-VAE ------------------------------------------------------------------------------------
def test_quantizer_nearest_and_ema_update():
    vq = VectorQuantizer(4, 2, decay=0.9, dead_threshold=0.0).to(F64)
    vq.initialized.fill_(True)
    code = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], dtype=F64)
    vq.codebook.copy_(code)
    vq.ema_sum.copy_(code)
    z = torch.tensor([[0.1, 0.0], [0.9, 0.2], [1.1, -0.2], [0.2, 0.7]], dtype=F64)
    brute = torch.cdist(z, code).argmin(1)
    assert torch.equal(vq.nearest(z), brute)
    vq.train()
    with torch.enable_grad():
        zq, idx = vq(z)
    # closed-form EMA: counts n_k, sums s_k, Laplace-smoothed division
    n_k = torch.tensor([1.0, 2.0, 1.0, 0.0], dtype=F64)
    count = 0.9 + 0.1 * n_k
    summ = 0.9 * code + 0.1 * torch.stack([z[0], z[1] + z[2], z[3], torch.zeros(2, dtype=F64)])
    total = count.sum()
    smooth = (count + vq.eps) / (total + 4 * vq.eps) * total
    torch.testing.assert_close(vq.codebook, summ / smooth[:, None])
    torch.testing.assert_close(zq, vq.codebook[idx])


def test_dead_codes_are_restarted_at_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(3, 2, decay=0.5, dead_threshold=0.3).to(F64).train()
    z = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1]], dtype=F64)
    with torch.enable_grad():
        vq(z)  # first call: initialisation from the batch
        vq.codebook[2] = torch.tensor([100.0, 100.0], dtype=F64)  # never chosen
        vq.ema_sum[2] = vq.codebook[2]
        for _ in range(3):  # its count decays 1 -> 0.5 -> 0.25 < 0.3: restarted
            vq(z)
    assert (vq.codebook.abs() < 1).all()
    assert (vq.ema_count >= 0.3).all()


def test_straight_through_gradient_reaches_the_encoder():
    torch.manual_seed(0)
    model = VQVAE((3,), num_codes=4, code_dim=2, num_tokens=2, hidden=(8,)).to(F64).eval()
    x = _x(5)
    z_e = model.encode(x).detach().requires_grad_(True)
    z_q, _ = model.quantize(z_e)
    z_st = z_e + (z_q - z_e).detach()
    model.observation.log_prob(x, model.decode(z_st)).sum().backward()
    z_q2 = z_q.detach().requires_grad_(True)
    model.observation.log_prob(x, model.decode(z_q2)).sum().backward()
    torch.testing.assert_close(z_e.grad, z_q2.grad)  # d rec / d z_e := d rec / d z_q


def test_code_prior_is_normalised_and_samples_reproducibly():
    torch.manual_seed(0)
    prior = CodePrior(3, hidden=8).to(F64)
    seqs = torch.tensor(list(itertools.product(range(3), repeat=3)))
    total = prior.log_prob(seqs).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=F64))
    a = prior.sample(6, 3, torch.Generator().manual_seed(1))
    b = prior.sample(6, 3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (6, 3) and a.max() < 3


def test_vqvae_log_prob_is_the_one_hot_elbo_of_the_enumerated_model():
    """VQ-VAE's generative model is the finite mixture ``p(x) = sum_k pi(k) p(x | e_k)`` over
    all ``K^T`` code sequences ``k``. With ``K = 3`` codes and ``T = 2`` tokens the 9 terms are
    enumerated here, each ``log pi(k)`` from the prior (normalised, see the test above) and
    ``log p(x | e_k)`` as ``torch.distributions.Normal(decoder mean, decoder_std)``.
    The deterministic posterior ``q(k|x) = 1[k = k*(x)]`` with ``k*`` the nearest codes (found
    here by brute-force distances) gives the ELBO
    ``E_q[log p(x, k) - log q(k|x)] = log pi(k*) + log p(x | e_{k*})``, and
    ``log p(x) - ELBO = -log p(k*|x) >= 0``. So ``log_prob`` must be the enumerated joint at
    ``k*`` (float64 round-off) and below the enumerated ``log p(x)``."""
    torch.manual_seed(0)
    K, T, std = 3, 2, 0.5
    model = VQVAE((3,), num_codes=K, code_dim=2, num_tokens=T, hidden=(8,), decoder_std=std)
    model = model.to(F64).eval()
    x = 2 * _x(6)
    with torch.no_grad():
        codes = model.quantizer.codebook.to(F64)
        seqs = torch.tensor(list(itertools.product(range(K), repeat=T)))  # (K^T, T)
        log_pi = model.prior.log_prob(seqs)  # (K^T,)
        means = model.decode(codes[seqs])  # (K^T, 3)
        log_lik = torch.distributions.Normal(means[None], std).log_prob(x[:, None]).sum(-1)
        joint = log_pi[None] + log_lik  # (n, K^T)
        z_e = model.encode(x)  # (n, T, code_dim)
        nearest = ((z_e[:, :, None] - codes[None, None]) ** 2).sum(-1).argmin(-1)  # (n, T)
        row = (nearest[:, :, None] == seqs.T[None]).all(1).long().argmax(1)
        lp = model.log_prob(x)
    torch.testing.assert_close(lp, joint[torch.arange(len(x)), row], rtol=0, atol=1e-10)
    assert (lp <= torch.logsumexp(joint, 1)).all()
    assert row.unique().numel() > 1  # the points do not all share one code sequence


@pytest.mark.slow
def test_vqvae_learns_and_uses_several_codes():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    x = centres[torch.randint(0, 4, (512,), generator=g)] + 0.1 * torch.randn(512, 2, generator=g)
    torch.manual_seed(0)
    model = VQVAE((2,), num_codes=8, code_dim=2, num_tokens=1, hidden=(32,), prior_hidden=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        before = model.loss(x).mean()
    for _ in range(300):
        opt.zero_grad()
        model.loss(x).mean().backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = model.loss(x).mean()
        _, idx = model.quantize(model.encode(x))
        s = model.sample(512, generator=torch.Generator().manual_seed(1), noise=False)
    assert after < before
    assert idx.unique().numel() >= 4
    # decoded prior samples (decoder means) land near the four centres
    near = torch.cdist(s, centres).min(1).values < 0.5
    assert near.float().mean() > 0.9


# -- latent-space helpers ----------------------------------------------------------------------
def test_interpolation_and_traversal():
    torch.manual_seed(0)
    model = VAE((3,), latent_dim=2, hidden=(8,)).to(F64).eval()
    x = _x(2)
    path = latent_interpolation(model, x[0], x[1], steps=5)
    mu, _ = model.encode(x)
    torch.testing.assert_close(path[0], model.decode(mu[:1])[0])
    torch.testing.assert_close(path[-1], model.decode(mu[1:])[0])
    grid = latent_traversal(model, x[0], span=2.0, steps=3)
    assert grid.shape == (2, 3, 3)
    z = mu[:1].clone()
    z[0, 1] = -2.0
    torch.testing.assert_close(grid[1, 0], model.decode(z)[0])
