"""Telling FSDP2-sharded models apart and gathering them whole (one gloo process here; two in tests/cli/test_train_cmd.py)."""

import torch
import torch.distributed as dist
from torch import nn

from pela.utils.sharded import gather_weights, holds_shards


def _tied() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.Linear(4, 10, bias=False))
    model[2].weight = model[0].weight
    return model


def test_a_whole_model_holds_no_shards_and_gathers_to_nothing():
    model = _tied()
    assert not holds_shards(model) and gather_weights(model) is None


def test_a_sharded_model_gathers_whole_with_tied_weights_one_tensor(tmp_path):
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = _tied()
        expected = {k: v.clone() for k, v in model.state_dict().items()}
        fully_shard(model)
        assert holds_shards(model)
        full = gather_weights(model)
        assert set(full) == set(expected) and all(torch.equal(full[k], v) for k, v in expected.items())
        assert full["0.weight"] is full["2.weight"] and not holds_shards(nn.Sequential(*[nn.Linear(2, 2)]))
        assert all(not hasattr(v, "full_tensor") for v in full.values())
    finally:
        dist.destroy_process_group()
