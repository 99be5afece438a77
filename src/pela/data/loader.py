"""The DataLoader that prepares batches, in worker processes if asked."""

from __future__ import annotations

import os
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset

from pela.errors import PelaError


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
    return DataLoader(
        data,
        collate_fn=collate_fn,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=workers > 0 and torch.cuda.is_available(),
        **kwargs,
    )
