"""pela.training.batches: seeded batches that restart at any step."""

import pytest
import torch

from pela import PelaError
from pela.training.batches import EpochBatches, split_batch


def test_batches_restart_where_a_run_stopped():
    whole = list(EpochBatches(10, 3, seed=7, start=0, total=7))
    assert len(whole) == 7 and all(len(b) == 3 for b in whole)
    assert sorted(i for b in whole[:3] for i in b) == sorted(set(i for b in whole[:3] for i in b))  # one epoch: no repeats
    assert list(EpochBatches(10, 3, seed=7, start=4, total=7)) == whole[4:]  # resumed at step 4: the same batches on
    with pytest.raises(PelaError, match="fewer than the batch size"):
        EpochBatches(2, 3, seed=0, start=0, total=1)


def test_a_batch_splits_into_micro_batches():
    batch = {"x": torch.arange(8), "y": torch.arange(8) * 2}
    parts = split_batch(batch, 3)
    assert [len(p["x"]) for p in parts] == [3, 3, 2] and torch.equal(torch.cat([p["y"] for p in parts]), batch["y"])
    assert split_batch(batch, 1) == [batch]
