"""DiT (Peebles & Xie 2023): shapes, exact patch bookkeeping, adaLN-Zero at initialisation, and
gradient flow / class conditioning once training starts."""

from __future__ import annotations

import pytest
import torch

from probpath.nn import DiT
from probpath.nn.dit import DiTBlock
from probpath.sampling.path_model import build_path_network
from probpath.score import DiffusionModel
from probpath.velocity import FlowMatching

SMALL = {"patch_size": 2, "hidden": 32, "depth": 2, "heads": 2}


def _net(shape=(1, 8, 8), num_classes=0, **kw):
    torch.manual_seed(0)
    return DiT(shape, num_classes=num_classes, **{**SMALL, **kw})


@pytest.mark.parametrize("shape, patch", [((1, 8, 8), 2), ((3, 8, 8), 4), ((1, 32, 32), 4)])
def test_output_shape_and_token_count(shape, patch):
    net = _net(shape, num_classes=3, patch_size=patch)
    x = torch.randn(2, *shape)
    assert net(x, torch.rand(2), torch.tensor([0, 2])).shape == (2, *shape)
    assert net(x, torch.rand(2)).shape == (2, *shape)  # cond None: the null class
    assert net.pos.shape == (1, (shape[1] // patch) * (shape[2] // patch), 32)
    assert net.num_parameters == sum(p.numel() for p in net.parameters())


def test_patchify_matches_the_patch_embedding_and_unpatchify_inverts_it():
    net = _net((3, 8, 8), patch_size=2)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    tokens = net.patchify(x)
    assert tokens.shape == (4, 16, 12)
    assert torch.equal(net.unpatchify(tokens), x)
    # the stride-p convolution is a linear map of each patch: with its weight laid out in
    # patchify's order (row, column, channel) it equals tokens @ W^T + b
    conv = net.patch_embed.double()
    w = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)
    expected = tokens @ w.T + conv.bias
    got = conv(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_adaln_zero_blocks_are_identities_and_the_network_outputs_zero_at_init():
    # the modulation layer is zero-initialised, so gate_a = gate_m = 0 and each residual branch
    # is multiplied by exactly 0: h + 0 * f(h) = h (f finite). The final layer is zero as well,
    # so the untrained network returns exactly 0 whatever x, t and the label.
    net = _net(num_classes=3)
    h, c = torch.randn(5, 16, 32), torch.randn(5, 32)
    for block in net.blocks:
        assert torch.equal(block(h, c), h)
    out = net(torch.randn(5, 1, 8, 8), torch.rand(5), torch.tensor([0, 1, 2, 3, 0]))
    assert torch.equal(out, torch.zeros_like(out))


def _grads(net, x, t, cond):
    net.zero_grad(set_to_none=True)
    (net(x, t, cond) - x).pow(2).mean().backward()
    return {n: p.grad for n, p in net.named_parameters()}


def test_gradients_reach_every_parameter_once_training_starts():
    # at init only the final linear layer has a gradient: its zero weight blocks the path to
    # every other parameter (d out / d tokens = W_final = 0), and d out / d final_modulation
    # passes through W_final too. One step makes W_final != 0, so the modulation layers (the
    # gates) get gradients; a second step makes the gates != 0, so the attention and MLP
    # weights get them: from the third backward pass on every parameter has one.
    net = _net(num_classes=3)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(8, 1, 8, 8, generator=g), torch.rand(8, generator=g)
    cond = torch.randint(0, 4, (8,), generator=g)  # label 3 = the null class
    first = _grads(net, x, t, cond)
    nonzero = {n for n, gr in first.items() if gr is not None and gr.abs().sum() > 0}
    assert nonzero == {"final.weight", "final.bias"}
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(2):
        _grads(net, x, t, cond)
        opt.step()
    third = _grads(net, x, t, cond)
    missing = [n for n, gr in third.items() if gr is None or gr.abs().sum() == 0]
    assert not missing, missing


def test_class_conditioning_changes_the_output_after_training_steps():
    net = _net(num_classes=2)
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(16, 1, 8, 8, generator=g), torch.rand(16, generator=g)
    labels = torch.arange(16) % 2
    target = x + labels[:, None, None, None].float()  # the label shifts the target
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        (net(x, t, labels) - target).pow(2).mean().backward()
        opt.step()
    with torch.no_grad():
        a = net(x[:4], t[:4], torch.zeros(4, dtype=torch.long))
        b = net(x[:4], t[:4], torch.ones(4, dtype=torch.long))
    assert not torch.allclose(a, b)


def test_path_models_take_network_dit():
    assert isinstance(build_path_network((1, 8, 8), 0, "dit"), DiT)
    net = build_path_network((1, 8, 8), 0, {"arch": "dit", **SMALL})
    assert isinstance(net, DiT) and net.blocks[0].heads == 2
    torch.manual_seed(0)
    m = DiffusionModel((1, 8, 8), network={"arch": "dit", **SMALL}, num_steps=50, steps=3)
    assert m.loss(torch.randn(3, 1, 8, 8)).shape == (3,)
    assert m.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)
    fm = FlowMatching((1, 8, 8), num_classes=2, network="dit", steps=2)
    assert isinstance(fm.network, DiT) and fm.network.num_classes == 2
    assert fm.loss(torch.randn(2, 1, 8, 8), torch.tensor([0, 1])).shape == (2,)


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="patch_size"):
        DiT((1, 8, 8), patch_size=3)
    with pytest.raises(ValueError, match="heads"):
        DiTBlock(30, heads=4)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        DiT((4,))
    with pytest.raises(ValueError, match="needs images"):
        build_path_network((4,), 0, "dit")
    with pytest.raises(ValueError, match="arch"):
        build_path_network((1, 8, 8), 0, {"arch": "resnet"})
