"""Seeded batches that can restart at any step."""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

from pela.errors import PelaError


class EpochBatches(Sampler[list[int]]):
    """Global batches of a fresh seeded permutation each epoch, starting at any step (for
    resume)."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start: int,
        total: int,
        lengths: list[int] | None = None,
    ):
        if n < batch_size:
            raise PelaError(f"dataset has {n} examples, fewer than the batch size {batch_size}")
        self.n, self.batch_size, self.seed, self.start, self.total = (
            n,
            batch_size,
            seed,
            start,
            total,
        )
        self.per_epoch = n // batch_size
        self.lengths = lengths

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + epoch)
        if self.lengths is None:
            return torch.randperm(self.n, generator=g)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        return torch.tensor(
            list(LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=g))
        )

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self) -> Iterator[list[int]]:
        perm, perm_epoch = None, -1
        for step in range(self.start, self.total):
            epoch, k = divmod(step, self.per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = self._permutation(epoch), epoch
            yield perm[k * self.batch_size : (k + 1) * self.batch_size].tolist()


def split_batch(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    if parts == 1:
        return [batch]
    chunks = {k: torch.tensor_split(v, parts) for k, v in batch.items()}
    return [{k: v[i] for k, v in chunks.items()} for i in range(parts)]
