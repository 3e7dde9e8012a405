"""Tiny models for the Trainer tests (never added to the catalog).

* ``NoisyDenoiser``: an MLP trained to denoise ``x + 0.1 * eps``; the loss draws from the
  global torch, NumPy and Python generators, so exact resume must restore all three.
* ``Regressor``: a deterministic MLP loss (no randomness) for the DDP equivalence test.
* ``TwoGroups``: a GAN-shaped model with two optimizer groups and a ``train_step`` hook.
* ``Conditional``: checks it receives the labels of the rows it is given.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from probpath.core import Capabilities, Model, OptimizerGroup
from probpath.core.validation import check_tensor
from probpath.nn.mlp import MLP

__all__ = ["NoisyDenoiser", "Regressor", "TwoGroups", "Conditional", "toy_data"]


def toy_data(n=64, dim=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=dtype)


class _Base(Model):
    capabilities = Capabilities(route="likelihood", section="§1.2")

    def sample(self, n, cond=None, generator=None, **options):
        if n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        dtype = next(self.parameters()).dtype
        return torch.randn(n, *self.event_shape, generator=generator, dtype=dtype,
                           device=self.device)  # fmt: skip


class NoisyDenoiser(_Base):
    fail_at_call = -1  # set on an instance: raise on this loss call (simulates a kill)

    def __init__(self, event_shape=(2,), hidden=16):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.net = MLP(self.event_shape[0], self.event_shape[0], (hidden,))
        self.calls = 0

    def loss(self, x, cond=None):
        x = check_tensor(x, "x", event_shape=self.event_shape)
        if self.calls == self.fail_at_call:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        scale = 0.1 + 0.01 * float(np.random.rand())  # noqa: NPY002 + 0.01 * random.random()
        noisy = x + scale * torch.randn_like(x)
        return ((self.net(noisy) - x) ** 2).sum(1)


class Regressor(_Base):
    nan_at_call = -1  # set on an instance: return NaN losses on this call
    fail_at_call = -1  # set on an instance: raise on this call (simulated kill)

    def __init__(self, event_shape=(2,), hidden=8):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.net = MLP(self.event_shape[0], self.event_shape[0], (hidden,), act="tanh")
        self.calls = 0

    def loss(self, x, cond=None):
        x = check_tensor(x, "x", event_shape=self.event_shape)
        if self.calls == self.fail_at_call:
            raise KeyboardInterrupt("simulated kill")
        out = ((self.net(x) - x.flip(1)) ** 2).sum(1)
        if self.calls == self.nan_at_call:
            out = out * float("nan")
        self.calls += 1
        return out


class TwoGroups(_Base):
    capabilities = Capabilities(route="adversarial", section="§1.3", one_step=True)

    def __init__(self, event_shape=(2,)):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.gen = nn.Linear(2, 2)
        self.disc = nn.Linear(2, 1)

    def optimizer_groups(self):
        return {
            "discriminator": OptimizerGroup(list(self.disc.parameters()), lr_scale=2.0),
            "generator": OptimizerGroup(list(self.gen.parameters()), betas=(0.5, 0.9)),
        }

    def loss(self, x, cond=None):
        x = check_tensor(x, "x", event_shape=self.event_shape)
        fake = self.gen(torch.randn_like(x))
        return self.disc(x).squeeze(1) - self.disc(fake).squeeze(1)

    fail_at_call = -1  # set on an instance: raise on this train_step call (simulated kill)

    def train_step(self, x, cond, step, update):
        if step == self.fail_at_call:
            raise KeyboardInterrupt("simulated kill")
        z = torch.randn_like(x)
        softplus = torch.nn.functional.softplus
        d_loss = (softplus(-self.disc(x)) + softplus(self.disc(self.gen(z).detach()))).mean()
        update(d_loss, "discriminator")
        g_loss = softplus(-self.disc(self.gen(torch.randn_like(x)))).mean()
        update(g_loss, "generator")
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}


class Conditional(_Base):
    capabilities = Capabilities(route="likelihood", section="§1.2", conditional=True)

    def __init__(self, event_shape=(2,), num_classes=3):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.emb = nn.Embedding(num_classes, 2)
        self.seen = 0

    def loss(self, x, cond=None):
        x = check_tensor(x, "x", event_shape=self.event_shape)
        if cond is None or not torch.equal(cond, x[:, 0].round().long()):
            raise AssertionError("the Trainer passed labels that do not belong to the rows")
        self.seen += len(x)
        return ((x - self.emb(cond)) ** 2).sum(1)
