"""The Factor-CLS protocol of Table 4: VAE vs β-VAE on shapes2d (Higgins et al. 2017).

Protocol (the paper's, at CPU scale; each departure is listed in benchmarks/README.md):

* data: ``make_shapes2d(n_images, seed=1000 + seed, size=IMAGE_SIZE)``, 64×64 binary images
  as dSprites (factors uniform on the 3 × 6 × 8 × 8 × 8 grid), pixels in {0, 1}. The size
  matters: β is normalised by pixels per latent (Higgins et al. §4: ``β_norm = β M / N``), so
  β = 4 at 64×64 is the paper's dSprites β-VAE, and β = 1 at 32×32 is the same β_norm;
* model: ``VAE(beta=β)`` with a Bernoulli decoder (``data_range=(0, 1)``), MLP encoder /
  decoder ``hidden``, ``latent_dim`` latents (dSprites' β-VAE used 10); the same
  architecture, optimiser and budget for every β;
* training: Adam (lr 1e-3), batch 64, ``steps`` steps or ``time_budget`` seconds (whichever
  first), ``torch.manual_seed(seed)``;
* metric: :func:`probpath.metrics.factor_cls_score` on the posterior means, 64 pairs per
  vote, the fixed factor one of :data:`FIXED_FACTORS` (scale, rotation, x, y: Higgins et al.
  never fix shape), a logistic regression on the raw votes (not standardised, as
  disentanglement_lib's ``beta_vae_sklearn``), ``n_train`` / ``n_test`` votes drawn with
  ``Generator().manual_seed(seed)``. The code of every one of the 9,216 grid images is
  computed once, so ``render`` looks codes up and ``encode`` is the identity: the same votes
  as encoding each rendered image, far cheaper.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from probpath.data import SHAPES2D_SIZES, make_shapes2d, render_shapes2d
from probpath.metrics import FactorCLSResult, factor_cls_score

__all__ = [
    "FIXED_FACTORS",
    "IMAGE_SIZE",
    "FactorRun",
    "grid_factors",
    "grid_index",
    "score_factor_vae",
    "train_factor_vae",
]

#: image side of the protocol (dSprites' 64; see the module docstring for why it matters)
IMAGE_SIZE = 64
#: factors a vote may fix: scale, rotation, x, y (Higgins et al. A.4; shape is never fixed)
FIXED_FACTORS: tuple[int, ...] = (1, 2, 3, 4)


def grid_factors() -> torch.Tensor:
    """All 9,216 factor vectors ``(9216, 5)`` in row-major order of ``SHAPES2D_SIZES``."""
    axes = [torch.arange(k) for k in SHAPES2D_SIZES]
    return torch.cartesian_prod(*axes)


def grid_index(factors: torch.Tensor) -> torch.Tensor:
    """Row of each factor vector ``(n, 5)`` in :func:`grid_factors` (a mixed-radix number)."""
    index = torch.zeros(len(factors), dtype=torch.long)
    for j, k in enumerate(SHAPES2D_SIZES):
        index = index * k + factors[:, j]
    return index


@dataclass
class FactorRun:
    """A trained Factor-CLS VAE: the model, its training seconds and optimizer steps."""

    model: torch.nn.Module
    seconds: float
    steps: int


def train_factor_vae(
    beta: float,
    seed: int,
    *,
    steps: int | None = 3000,
    time_budget: float | None = None,
    n_images: int = 20_000,
    latent_dim: int = 10,
    hidden: Sequence[int] = (256, 256),
    size: int = IMAGE_SIZE,
) -> FactorRun:
    """Train the protocol's VAE with weight ``beta`` on the KL term (β = 1: the plain VAE).

    Stops after ``steps`` optimizer steps or ``time_budget`` seconds, whichever comes first
    (at least one must be given).
    """
    from probpath.likelihood import VAE

    if steps is None and time_budget is None:
        raise ValueError("train_factor_vae needs steps or time_budget (or both)")
    torch.manual_seed(seed)
    data = make_shapes2d(n_images, seed=1000 + seed, size=size).x
    model = VAE(
        (1, size, size),
        latent_dim=latent_dim,
        hidden=list(hidden),
        likelihood="bernoulli",
        data_range=(0.0, 1.0),
        beta=beta,
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    done = 0
    while (steps is None or done < steps) and (
        time_budget is None or time.perf_counter() - start < time_budget
    ):
        batch = data[torch.randint(0, len(data), (64,), generator=g)]
        loss = model.loss(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1
    model.eval()
    return FactorRun(model, time.perf_counter() - start, done)


@torch.no_grad()
def score_factor_vae(
    model: torch.nn.Module,
    seed: int,
    *,
    n_train: int = 1000,
    n_test: int = 1000,
    images: torch.Tensor | None = None,
    fixed_factors: Sequence[int] | None = FIXED_FACTORS,
    standardize: bool = False,
) -> FactorCLSResult:
    """Factor-CLS of ``model``'s posterior means on the shapes2d grid (votes seeded by
    ``seed``); ``images`` = ``render_shapes2d(grid_factors(), size)`` at the model's image
    size if already rendered. ``fixed_factors`` / ``standardize``: see
    :func:`probpath.metrics.factor_cls_score` (``None`` / ``True``: the five-factor,
    standardised variant of earlier sessions)."""
    if images is None:
        images = render_shapes2d(grid_factors(), int(model.event_shape[-1]))
    codes = torch.cat([model.encode(chunk)[0] for chunk in images.split(1024)]).double()
    return factor_cls_score(
        lambda z: z,
        lambda f: codes[grid_index(f)],
        SHAPES2D_SIZES,
        n_pairs=64,
        n_train=n_train,
        n_test=n_test,
        fixed_factors=fixed_factors,
        standardize=standardize,
        generator=torch.Generator().manual_seed(seed),
    )
