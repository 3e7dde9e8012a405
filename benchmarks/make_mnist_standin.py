"""Write a 10,000 x 28 x 28 stand-in for the MNIST test images (no network here): the embedded
digits (8 x 8, levels 0..16) drawn with replacement, upsampled bilinearly to 28 x 28, shifted
by up to 2 pixels at random, scaled to 0..255 bytes; IDX files as MNIST ships them.

    python benchmarks/make_mnist_standin.py OUT_DIR
    probpath compare --data OUT_DIR/t10k-images-idx3-ubyte.gz \
        --labels OUT_DIR/t10k-labels-idx1-ubyte.gz --time 60 ...
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from probpath.data.digits import load_digits


def _idx(array: np.ndarray) -> bytes:
    head = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(np.uint8).tobytes()


def main(out: Path, n: int = 10_000, seed: int = 0) -> None:
    digits = load_digits()
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(digits.x), (n,), generator=g)
    x = digits.x[pick].float() / 16.0  # (n, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    x = F.pad(x, (2, 2, 2, 2))  # 28 x 28 with a 2-pixel border, as MNIST centres digits
    shifts = torch.randint(-2, 3, (n, 2), generator=g)
    x = torch.stack(
        [torch.roll(img, (int(a), int(b)), dims=(1, 2)) for img, (a, b) in zip(x, shifts)]
    )
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).squeeze(1).numpy()
    labels = digits.y[pick].numpy()
    out.mkdir(parents=True, exist_ok=True)
    (out / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    (out / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
