"""Seeded, resumable, DDP-sharded data order: one permutation per epoch, cut into batches."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["EpochSampler", "derive_seed"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixing ``parts`` (e.g. ``(seed, epoch)``) through NumPy's SeedSequence."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & 0x7FFFFFFFFFFFFFFF


class EpochSampler:
    """Batches of row indices drawn without replacement, one seeded permutation per epoch.

    Epoch ``e`` uses ``randperm(n)`` seeded by ``(seed, e)``, so the order depends only on
    the seed and the epoch: the state to resume is ``(epoch, position)`` where ``position``
    counts the batches already drawn in that epoch. Under data parallelism the permutation
    is padded by wrapping to a multiple of ``world_size`` and rank ``r`` takes every
    ``world_size``-th index from ``r`` (as ``torch.utils.data.DistributedSampler`` does), so
    ``world_size`` ranks with batch ``B`` see, step by step, the same rows as one process with
    batch ``world_size * B``. The last incomplete batch of an epoch is dropped so that every
    step has the same batch size; if the shard is smaller than ``batch_size`` the whole shard
    is one batch.

    Args:
        n: number of rows in the data set.
        batch_size: rows per batch on this rank.
        seed: seed of the permutations.
        rank / world_size: this process's place in the data-parallel group.
        epoch / position: where to start (resume).

    >>> s = EpochSampler(10, 4, seed=0)
    >>> s.batches_per_epoch, s.batch_size
    (2, 4)
    >>> first = [s.next_batch()[0] for _ in range(2)]
    >>> sorted(torch.cat(first).tolist()) == sorted(set(torch.cat(first).tolist()))
    True
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        epoch: int = 0,
        position: int = 0,
    ):
        if n < 1:
            raise ValueError("the data set is empty; pass at least one sample")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside the world of size {world_size}")
        self.n = int(n)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.shard_size = math.ceil(self.n / self.world_size)
        self.batch_size = min(int(batch_size), self.shard_size)
        self.batches_per_epoch = self.shard_size // self.batch_size
        self.epoch = int(epoch)
        self.position = int(position)
        self._shard: torch.Tensor | None = None
        self._shard_epoch = -1

    def permutation(self, epoch: int) -> torch.Tensor:
        """The full permutation of ``range(n)`` used in ``epoch`` (identical on every rank)."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0xDA7A))
        return torch.randperm(self.n, generator=g)

    def shard(self, epoch: int) -> torch.Tensor:
        """This rank's indices for ``epoch``, shape ``(shard_size,)``."""
        perm = self.permutation(epoch)
        total = self.shard_size * self.world_size
        if total > self.n:  # wrap around so every rank gets the same number of rows
            perm = torch.cat([perm, perm[: total - self.n]])
        return perm[self.rank : total : self.world_size]

    def next_batch(self) -> tuple[torch.Tensor, int, int]:
        """``(indices, epoch, batch_index)`` of the next batch; advances the position."""
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
        if self._shard_epoch != self.epoch:
            self._shard = self.shard(self.epoch)
            self._shard_epoch = self.epoch
        start = self.position * self.batch_size
        index = self._shard[start : start + self.batch_size]
        batch_index = self.position
        self.position += 1
        return index, self.epoch, batch_index

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed", "world_size"}`` — all that resuming needs."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "world_size": self.world_size,
        }
