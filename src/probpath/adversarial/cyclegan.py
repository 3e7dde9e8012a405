"""CycleGAN: unpaired translation between two domains with cycle consistency (survey §1.3).

Two generators ``G_AB: A -> B`` and ``G_BA: B -> A`` and two discriminators ``D_A``, ``D_B``
are trained with adversarial losses on each domain plus the cycle-consistency loss
``|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1`` (Zhu et al., 2017).

probpath fits it on one data set: domain A is the data, domain B a fixed transformation of
it (``"rotate90"``, ``"mirror"`` or ``"negate"``). No loss term pairs ``a_i`` with ``T(a_i)``:
each batch is used as domain A and, shuffled by one position and transformed, as domain B.
CycleGAN is a translator, not a density model: ``sample(n)`` translates stored domain-A
training examples (a reservoir) into domain B, and ``log_prob`` is unavailable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probpath.adversarial.gan import (
    IMPLICIT_DENSITY_MESSAGE,
    Discriminator,
    discriminator_loss,
    generator_loss,
)
from probpath.core.model import Capabilities, Model, OptimizerGroup
from probpath.core.validation import (
    check_choice,
    check_event_shape,
    check_positive_int,
    check_tensor,
)
from probpath.nn.conv import ConvDecoder, ConvEncoder
from probpath.nn.mlp import MLP

__all__ = ["DOMAIN_TRANSFORMS", "domain_transform", "CycleGAN"]

DOMAIN_TRANSFORMS = ("rotate90", "mirror", "negate")


def domain_transform(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Map domain-A data ``(batch, *event)`` to domain B.

    * ``"rotate90"``: images are rotated by 90 degrees in the (H, W) plane; vectors have
      their first two coordinates rotated: ``(x1, x2, ...) -> (-x2, x1, ...)``;
    * ``"mirror"``: reverse the last axis (horizontal flip of an image);
    * ``"negate"``: ``-x``.
    """
    check_choice(kind, "transform", DOMAIN_TRANSFORMS)
    if kind == "negate":
        return -x
    if kind == "mirror":
        return x.flip(-1)
    if x.ndim == 4:
        return torch.rot90(x, 1, dims=(2, 3))
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError("transform='rotate90' needs vectors with >= 2 coordinates or images")
    return torch.cat([-x[:, 1:2], x[:, :1], x[:, 2:]], 1)


def _translator(event_shape, architecture, hidden, channels, act) -> nn.Module:
    if architecture == "conv":
        c, size = event_shape[0], event_shape[1:]
        return nn.Sequential(
            ConvEncoder(c, size, None, channels, act),
            ConvDecoder(None, c, size, tuple(channels)[::-1], act),
        )
    dim = int(torch.Size(event_shape).numel())
    return nn.Sequential(
        nn.Flatten(1), MLP(dim, dim, tuple(hidden), act), nn.Unflatten(1, tuple(event_shape))
    )


class CycleGAN(Model):
    """Cycle-consistent adversarial translation between data (A) and a transformed copy (B).

    Args:
        event_shape: shape of one sample.
        transform: how domain B is made from the data (see :func:`domain_transform`).
        hidden: MLP widths; ``channels``: convolution widths; ``architecture``: "mlp"/"conv".
        loss: adversarial loss (default least-squares, as in the paper).
        cycle_weight: weight ``lambda`` of the cycle-consistency loss.
        identity_weight: weight of the identity loss ``|G_AB(b) - b| + |G_BA(a) - a|``.
        reservoir_size: number of domain-A training examples kept for :meth:`sample`.
        betas: Adam betas of both optimizers.
        act: activation name.

    References:
        Zhu et al., "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
        Networks", ICCV 2017.
    """

    capabilities = Capabilities(route="adversarial", section="§1.3", one_step=True)

    def __init__(
        self,
        event_shape: Sequence[int],
        transform: str = "rotate90",
        hidden: Sequence[int] = (64, 64),
        architecture: str = "mlp",
        channels: Sequence[int] = (16, 32),
        loss: str = "least-squares",
        cycle_weight: float = 10.0,
        identity_weight: float = 0.0,
        reservoir_size: int = 256,
        betas: Sequence[float] = (0.5, 0.999),
        act: str = "silu",
    ):
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        self.transform = check_choice(transform, "transform", DOMAIN_TRANSFORMS)
        check_choice(architecture, "architecture", ("mlp", "conv"))
        self.loss_kind = check_choice(
            loss, "loss", ("least-squares", "non-saturating", "wasserstein")
        )
        if cycle_weight < 0 or identity_weight < 0:
            raise ValueError("cycle_weight and identity_weight must be >= 0")
        self.cycle_weight, self.identity_weight = float(cycle_weight), float(identity_weight)
        self.betas = tuple(float(b) for b in betas)
        nets = (self.event_shape, architecture, hidden, channels, act)
        self.g_ab, self.g_ba = _translator(*nets), _translator(*nets)
        features = max(hidden, default=64) if architecture == "mlp" else 64
        self.d_a, self.d_b = (
            Discriminator(
                self.event_shape,
                0,
                architecture,
                hidden,
                channels,
                features,
                act,
                bias=self.loss_kind != "wasserstein",
            )
            for _ in range(2)
        )
        size = check_positive_int(reservoir_size, "reservoir_size")
        # until training data arrives the reservoir holds N(0, I) draws (fixed seed)
        init = torch.randn(size, *self.event_shape, generator=torch.Generator().manual_seed(0))
        self.register_buffer("reservoir", init)
        self.register_buffer("reservoir_pos", torch.zeros((), dtype=torch.long))

    def _check(self, x) -> torch.Tensor:
        x = check_tensor(x, "x", event_shape=self.event_shape)
        return x.to(device=self.device, dtype=next(self.parameters()).dtype)

    def translate(self, x: torch.Tensor, direction: str = "AB") -> torch.Tensor:
        """``G_AB(x)`` (``direction="AB"``) or ``G_BA(x)`` (``"BA"``), shape preserved."""
        check_choice(direction, "direction", ("AB", "BA"))
        x = self._check(x)
        return self.g_ab(x) if direction == "AB" else self.g_ba(x)

    def domains(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpaired domain batches: ``a = x`` and ``b = T(x shifted by one position)``."""
        return x, domain_transform(x.roll(1, 0), self.transform)

    @torch.no_grad()
    def _remember(self, a: torch.Tensor) -> None:
        size = self.reservoir.shape[0]
        a = a[-size:]
        idx = (self.reservoir_pos + torch.arange(len(a), device=a.device)) % size
        self.reservoir[idx] = a.to(self.reservoir.dtype)
        self.reservoir_pos += len(a)

    def _generator_objective(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fake_b, fake_a = self.g_ab(a), self.g_ba(b)
        adv = generator_loss(self.loss_kind, self.d_b(fake_b)) + generator_loss(
            self.loss_kind, self.d_a(fake_a)
        )
        cycle = (self.g_ba(fake_b) - a).abs().flatten(1).mean(1)
        cycle = cycle + (self.g_ab(fake_a) - b).abs().flatten(1).mean(1)
        out = adv + self.cycle_weight * cycle
        if self.identity_weight > 0:
            idt = (self.g_ab(b) - b).abs().flatten(1).mean(1)
            idt = idt + (self.g_ba(a) - a).abs().flatten(1).mean(1)
            out = out + self.identity_weight * idt
        return out

    def _discriminator_objective(self, a, b, fake_a, fake_b) -> torch.Tensor:
        return discriminator_loss(self.loss_kind, self.d_b(b), self.d_b(fake_b)) + (
            discriminator_loss(self.loss_kind, self.d_a(a), self.d_a(fake_a))
        )

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        """Generators together, discriminators together."""
        g = [*self.g_ab.parameters(), *self.g_ba.parameters()]
        d = [*self.d_a.parameters(), *self.d_b.parameters()]
        return {
            "generator": OptimizerGroup(g, betas=self.betas),
            "discriminator": OptimizerGroup(d, betas=self.betas),
        }

    def train_step(self, x, cond, step: int, update) -> dict[str, float]:
        """One discriminator update (both domains), then one generator update."""
        a, b = self.domains(self._check(x))
        if self.training:
            self._remember(a)
        self.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake_b, fake_a = self.g_ab(a), self.g_ba(b)
        d_loss = self._discriminator_objective(a, b, fake_a, fake_b).mean()
        update(d_loss, "discriminator")
        self.zero_grad(set_to_none=True)
        g_loss = self._generator_objective(a, b).mean()
        update(g_loss, "generator")
        self.zero_grad(set_to_none=True)
        return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Monitoring value per sample: discriminator + generator objectives, ``(batch,)``."""
        a, b = self.domains(self._check(x))
        fake_b, fake_a = self.g_ab(a), self.g_ba(b)
        return self._discriminator_objective(a, b, fake_a, fake_b) + self._generator_objective(a, b)

    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Domain-B samples: ``G_AB`` applied to ``source`` or to reservoir draws.

        Without ``source``, ``n`` stored domain-A training examples are picked uniformly
        (with ``generator``) and translated. Shape ``(n, *event_shape)``.
        """
        n = check_positive_int(n, "n")
        if source is None:
            size, device = self.reservoir.shape[0], self.reservoir.device
            idx = torch.randint(0, size, (n,), generator=generator, device=device)
            source = self.reservoir[idx]
        elif len(source) != n:
            raise ValueError(f"source has {len(source)} rows but n={n}; pass n=len(source)")
        return self.translate(source, "AB")

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Not available: CycleGAN is an implicit translator (survey §4)."""
        raise NotImplementedError(IMPLICIT_DENSITY_MESSAGE.format(name=type(self).__name__))
