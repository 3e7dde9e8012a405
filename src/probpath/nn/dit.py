"""DiT: a diffusion transformer on image patches with adaLN-Zero blocks (Peebles & Xie 2023).

``x (batch, C, H, W)`` is cut into ``p x p`` patches, each a token (a linear map = a strided
convolution), plus fixed 2-D sin-cos position features. The time and class embeddings are
summed into one conditioning vector ``c``; each block regresses from ``c`` a shift, a scale and
a gate for its attention and its MLP branch (adaptive layer norm):

    h = h + gate_a * Attention(LN(h) * (1 + scale_a) + shift_a)
    h = h + gate_m * MLP(LN(h) * (1 + scale_m) + shift_m)

"-Zero": the regression layers start at zero, so every gate is 0 and every block is the
identity at initialisation; the final layer (adaptive LN, then a linear map back to
``p * p * C`` values per token, unpatchified) is zero too, so the untrained network outputs 0.

References:
    Peebles & Xie, "Scalable Diffusion Models with Transformers", ICCV 2023, §3.2 (Fig. 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probpath.core.validation import check_event_shape, check_positive_int
from probpath.nn.embeddings import time_embedding as make_time_embedding

__all__ = ["DiT", "DiTBlock", "sincos_position_features"]


def sincos_position_features(grid_h: int, grid_w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos features ``(grid_h * grid_w, dim)`` (half the features per axis, as
    the transformer's 1-D features of the row and of the column index; ``dim % 4 == 0``)."""
    if dim % 4:
        raise ValueError(f"hidden size must be divisible by 4 for 2-D position features, got {dim}")
    quarter = dim // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64),
        torch.arange(grid_w, dtype=torch.float64),
        indexing="ij",
    )
    feats = []
    for pos in (rows.reshape(-1), cols.reshape(-1)):
        arg = pos[:, None] * freqs[None]
        feats += [torch.sin(arg), torch.cos(arg)]
    return torch.cat(feats, dim=1).float()


def _modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return h * (1.0 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """One adaLN-Zero transformer block; ``forward(h (B, N, D), c (B, D)) -> (B, N, D)``."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, hidden)
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))
        nn.init.zeros_(self.modulation[1].weight)  # adaLN-Zero: gates start at 0
        nn.init.zeros_(self.modulation[1].bias)

    def attention(self, h: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention over the tokens."""
        b, n, d = h.shape
        q, k, v = self.qkv(h).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(c).chunk(6, dim=1)
        h = h + gate_a[:, None] * self.attention(_modulate(self.norm1(h), shift_a, scale_a))
        return h + gate_m[:, None] * self.mlp(_modulate(self.norm2(h), shift_m, scale_m))


class DiT(nn.Module):
    """``(x_t, t, cond) -> output`` for images ``(batch, C, H, W)``: a diffusion transformer.

    Args:
        event_shape: ``(C, H, W)``, ``H`` and ``W`` divisible by ``patch_size``.
        patch_size: side ``p`` of the square patches (tokens: ``H W / p^2``).
        hidden: token width ``D`` (divisible by 4 and by ``heads``).
        depth: number of blocks.
        heads: attention heads.
        mlp_ratio: MLP width / ``D``.
        num_classes: number of labels (0: unconditional; index ``num_classes`` = no label, the
            classifier-free-guidance null class, as in :class:`~probpath.nn.UNet`).
        time_embedding: ``"sinusoidal"`` or ``"fourier"`` features of ``t``.

    Shapes: ``x (batch, C, H, W)``, ``t (batch,)``, ``cond (batch,)`` or ``None`` ->
    ``(batch, C, H, W)``.

    >>> net = DiT((1, 8, 8), patch_size=2, hidden=32, depth=2, heads=2)
    >>> net(torch.zeros(3, 1, 8, 8), torch.rand(3)).shape, net.num_parameters > 0
    (torch.Size([3, 1, 8, 8]), True)
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        patch_size: int = 2,
        hidden: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        time_embedding: str = "sinusoidal",
    ):
        super().__init__()
        shape = check_event_shape(event_shape)
        if len(shape) != 3:
            raise ValueError(f"event_shape must be (C, H, W) for DiT, got {shape}")
        c, h, w = shape
        p = check_positive_int(patch_size, "patch_size")
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not divisible by patch_size={p}")
        hidden = check_positive_int(hidden, "hidden")
        depth = check_positive_int(depth, "depth")
        heads = check_positive_int(heads, "heads")
        self.event_shape, self.patch_size, self.num_classes = shape, p, int(num_classes)
        self.grid = (h // p, w // p)
        self.patch_embed = nn.Conv2d(c, hidden, kernel_size=p, stride=p)
        self.register_buffer(
            "pos", sincos_position_features(*self.grid, hidden)[None], persistent=False
        )
        self.time_embed = nn.Sequential(
            make_time_embedding(time_embedding, hidden),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
        )
        if self.num_classes:
            self.class_embed = nn.Embedding(self.num_classes + 1, hidden)
        self.blocks = nn.ModuleList(DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.final = nn.Linear(hidden, p * p * c)
        for layer in (self.final_modulation[1], self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def num_parameters(self) -> int:
        """Number of trainable parameters (the tables' "Params" column)."""
        from probpath.core.model import num_parameters

        return num_parameters(self, trainable_only=True)

    def conditioning(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The vector ``c = time_embed(t) + class_embed(cond)`` ``(batch, D)``."""
        c = self.time_embed(t)
        if self.num_classes:
            if cond is None:
                cond = torch.full((len(t),), self.num_classes, device=c.device)
            c = c + self.class_embed(cond.long())
        return c

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, N, p * p * C)``, tokens in row-major patch order, each patch's
        values ordered (row in patch, column in patch, channel); :meth:`unpatchify` inverts it."""
        b, ch, _, _ = x.shape
        (gh, gw), p = self.grid, self.patch_size
        x = x.reshape(b, ch, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, gh * gw, p * p * ch)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, p * p * C) -> (B, C, H, W)``, the inverse of :meth:`patchify`."""
        (gh, gw), p, ch = self.grid, self.patch_size, self.event_shape[0]
        x = tokens.reshape(len(tokens), gh, gw, p, p, ch).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(len(tokens), ch, gh * p, gw * p)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos.to(x.dtype)
        c = self.conditioning(t, cond).to(x.dtype)
        for block in self.blocks:
            tokens = block(tokens, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=1)
        return self.unpatchify(self.final(_modulate(self.final_norm(tokens), shift, scale)))
