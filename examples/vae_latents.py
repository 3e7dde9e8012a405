"""Latent interpolation and traversal plots of a convolutional VAE on the digits (survey §1.2).

A VAE's latent space is continuous: decoding the straight line between the posterior means
of two digits morphs one into the other, and moving one latent coordinate at a time
(a traversal) shows what each coordinate controls; a beta-VAE (beta > 1) tends to make the
coordinates more interpretable at the cost of blurrier reconstructions.

The digits (8x8, grey levels 0..16) are scaled to [-1, 1] and fitted with a Bernoulli
decoder, which maps them to [0, 1] internally. Training uses the shared Trainer.

Run::

    python examples/vae_latents.py [--steps 3000] [--beta 1.0] [--out vae_latents]

It writes ``interpolation.png`` (rows: pairs of test digits, columns: steps along the line),
``traversal.png`` (rows: latent coordinates, columns: values in [-3, 3]) and
``samples.png``, and prints the test-set IWAE bound (nats per image).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from probpath.data import load_digits, rescale  # noqa: E402
from probpath.data.dataset import Dataset  # noqa: E402
from probpath.likelihood.vae import VAE, latent_interpolation, latent_traversal  # noqa: E402
from probpath.training import TrainConfig, Trainer  # noqa: E402


def _grid(images: torch.Tensor, path: Path, title: str) -> None:
    """Save a (rows, cols, 1, H, W) tensor of images in [-1, 1] as one figure."""
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            axes[r, c].imshow(images[r, c, 0].cpu(), cmap="gray", vmin=-1, vmax=1)
            axes[r, c].axis("off")
    fig.suptitle(title)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--latent-dim", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("vae_latents"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    digits = load_digits()
    data = Dataset(rescale(digits.x, (0, 16), (-1, 1)), digits.y, name="digits")
    train, test = data.split(0.2, seed=0)
    model = VAE(
        (1, 8, 8),
        latent_dim=args.latent_dim,
        architecture="conv",
        channels=(32, 64),
        likelihood="bernoulli",
        beta=args.beta,
        kl_warmup_steps=args.steps // 5,
    )
    cfg = TrainConfig(steps=args.steps, batch_size=128, lr=2e-3, ema_decay=None, seed=0)
    model = Trainer(cfg).fit(model, train).model.eval()

    with torch.no_grad():
        bound = model.log_prob(test.x.to(model.device), k=64).mean()
        print(f"test IWAE bound (k=64): {bound:.2f} nats per image")
        pairs = [(0, 1), (2, 3), (4, 5), (6, 7)]
        lines = torch.stack(
            [latent_interpolation(model, test.x[i], test.x[j], steps=9) for i, j in pairs]
        )
        _grid(lines, args.out / "interpolation.png", "latent interpolation")
        grid = latent_traversal(model, test.x[0], span=3.0, steps=9)
        _grid(grid, args.out / "traversal.png", f"latent traversal (beta={args.beta})")
        samples = model.sample(64, generator=torch.Generator(model.device).manual_seed(0))
        _grid(samples.reshape(8, 8, 1, 8, 8), args.out / "samples.png", "samples")
    print(f"plots written to {args.out}/")


if __name__ == "__main__":
    main()
