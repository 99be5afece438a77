"""Models whose weights FSDP2 shards over processes (DTensors): telling them apart, and gathering
them whole."""

from __future__ import annotations

import torch
from torch import nn


def holds_shards(model: nn.Module) -> bool:
    """Whether FSDP2 (`torch.distributed.fsdp.fully_shard`) has split ``model``'s weights over
    processes."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def gather_weights(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """A sharded model's whole state dict, on the CPU of the main process (empty on the others);
    None for a model that is whole. A collective: every process must call it.

    Weights tied between layers come back as one tensor, as `safetensors.torch.save_model` expects
    them.
    """
    if not holds_shards(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    # each its own storage: gathered tensors can be views of one buffer
    for name, t in full.items():
        full[name] = t.clone()
    first: dict[int, str] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        kept = first.setdefault(id(t), name)
        if kept != name and kept in full and name in full:
            full[name] = full[kept]
    return full
