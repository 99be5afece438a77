"""Seeded batches that can restart at any step, and the DataLoader that prepares them."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pela.errors import PelaError


class EpochBatches(Sampler[list[int]]):
    """Global batches of a fresh seeded permutation each epoch, starting at any step (for resume)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, total: int, lengths: list[int] | None = None):
        if n < batch_size:
            raise PelaError(f"dataset has {n} examples, fewer than the batch size {batch_size}")
        self.n, self.batch_size, self.seed, self.start, self.total = n, batch_size, seed, start, total
        self.per_epoch = n // batch_size
        self.lengths = lengths

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + epoch)
        if self.lengths is None:
            return torch.randperm(self.n, generator=g)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        return torch.tensor(list(LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=g)))

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self) -> Iterator[list[int]]:
        perm, perm_epoch = None, -1
        for step in range(self.start, self.total):
            epoch, k = divmod(step, self.per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = self._permutation(epoch), epoch
            yield perm[k * self.batch_size:(k + 1) * self.batch_size].tolist()


def split_batch(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    if parts == 1:
        return [batch]
    chunks = {k: torch.tensor_split(v, parts) for k, v in batch.items()}
    return [{k: v[i] for k, v in chunks.items()} for i in range(parts)]


def make_loader(data: Dataset, collate_fn: Callable, workers: int = 0, **kwargs: Any) -> DataLoader:
    """A DataLoader whose batches are prepared by ``workers`` processes (0 = in this one).

    Batches depend only on the examples (preprocessing is not random), so results are the same for
    any number of workers; workers only overlap tokenizing and image decoding with the model's work.
    """
    if workers < 0:
        raise PelaError(f"workers must be an integer >= 0, got {workers!r}")
    if workers:
        # the tokenizer's own thread pool and forked workers deadlock; a worker is its parallelism
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return DataLoader(data, collate_fn=collate_fn, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=workers > 0 and torch.cuda.is_available(), **kwargs)
