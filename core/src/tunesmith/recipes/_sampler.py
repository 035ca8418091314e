"""A sampler whose order is a pure function of (seed, epoch), so a resumed run
sees exactly the batches an uninterrupted one would have seen."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[int]):
    """Indices of one rank's share of an epoch, optionally skipping the first ones.

    Args:
        length: Dataset size.
        shuffle: Permute with a generator seeded by ``seed + epoch``.
        seed: Base seed.
        rank: This process's rank; it takes every ``world_size``-th index.
        world_size: Number of processes.

    The epoch and the number of already-consumed samples are set with
    :meth:`set_position` before iterating. Tail samples that do not divide evenly
    between ranks are dropped, so every rank runs the same number of steps.
    """

    def __init__(
        self,
        length: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch``, skipping this rank's first ``start`` samples."""
        self.epoch = epoch
        self.start = start

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        per_rank = self.length // self.world_size
        return order[self.rank : per_rank * self.world_size : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return self.length // self.world_size - self.start
