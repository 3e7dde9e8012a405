"""Hierarchical VAE, flow-posterior VAE (Eq. 53–54), VQ-VAE, and the latent-space helpers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

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
def test_hvae_elbo_matches_mean_log_weight():
    """The analytic-KL ELBO and the mean log importance weight estimate the same quantity
    (E_q[log p(x, z) - log q(z|x)]): agreement within 5 standard errors of the difference."""
    torch.manual_seed(0)
    model = HierarchicalVAE((3,), latent_dims=(3, 2), width=8, hidden=(8,)).to(F64)
    x = _x(4)
    R = 4000
    xr = x.repeat(R, 1)
    with torch.no_grad():
        a = model.elbo(xr, generator=torch.Generator().manual_seed(1)).reshape(R, -1)
        b = model.log_weight(xr, generator=torch.Generator().manual_seed(2)).reshape(R, -1)
    se = torch.sqrt(a.var(0) / R + b.var(0) / R)
    assert ((a.mean(0) - b.mean(0)).abs() < 5 * se).all()


def test_hvae_iwae_increases_with_k_and_three_layers_work():
    torch.manual_seed(0)
    model = HierarchicalVAE((3,), latent_dims=(3, 2, 2), width=8, hidden=()).to(F64)
    x = _x(5)
    R = 300
    xr = x.repeat(R, 1)
    with torch.no_grad():
        lo = model.log_prob(xr, k=1, generator=torch.Generator().manual_seed(0))
        hi = model.log_prob(xr, k=32, generator=torch.Generator().manual_seed(1))
    lo, hi = lo.reshape(R, -1).sum(1), hi.reshape(R, -1).sum(1)
    assert hi.mean() - lo.mean() > 4 * math.sqrt(lo.var() / R + hi.var() / R)
    assert model.sample(7, generator=torch.Generator().manual_seed(0)).shape == (7, 3)
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


def test_vqvae_log_prob_is_decoder_plus_prior():
    torch.manual_seed(0)
    model = VQVAE((3,), num_codes=4, code_dim=2, num_tokens=2, hidden=(8,)).to(F64).eval()
    x = _x(5)
    with torch.no_grad():
        z_q, idx = model.quantize(model.encode(x))
        expected = model.observation.log_prob(x, model.decode(z_q)) + model.prior.log_prob(idx)
        torch.testing.assert_close(model.log_prob(x), expected)


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
