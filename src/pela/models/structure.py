"""Which layers of a model are factorized at which rank, and rebuilding that structure."""

from __future__ import annotations

from typing import Any

from torch import nn

from pela.arch.registry import linear_weight
from pela.errors import PelaError
from pela.layers.lowrank import LowRankLinear

# ---------------------------------------------------------------- structure
# activation checkpointing (Accelerate's, under FSDP) wraps each block under this name; its state
# dict leaves it out
CHECKPOINT_WRAPPED = "_checkpoint_wrapped_module."


def factorized_layers(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Each factorized layer's name (as the weights are saved) and shape."""
    return {
        name.replace(CHECKPOINT_WRAPPED, ""): {
            "rank": m.rank,
            "in_features": m.in_features,
            "out_features": m.out_features,
            "bias": m.b.bias is not None,
        }
        for name, m in model.named_modules()
        if isinstance(m, LowRankLinear)
    }


def apply_structure(model: nn.Module, layers: dict[str, dict[str, Any]]) -> None:
    """Swap the named linear layers of a freshly built ``model`` for empty `LowRankLinear` of the
    saved ranks."""

    modules = dict(model.named_modules())
    for name, spec in layers.items():
        old = modules.get(name)
        wb = None if old is None else linear_weight(old)
        if wb is None:
            raise PelaError(
                f"saved model factorizes layer {name!r}, which this architecture does not have as "
                "a linear layer"
            )
        out_f, in_f = wb[0].shape
        if (in_f, out_f) != (spec["in_features"], spec["out_features"]):
            raise PelaError(
                f"layer {name!r} is {in_f}->{out_f} here but "
                f"{spec['in_features']}->{spec['out_features']} in the saved model"
            )
        new = LowRankLinear(
            in_f,
            out_f,
            int(spec["rank"]),
            bias=bool(spec["bias"]),
            device=wb[0].device,
            dtype=wb[0].dtype,
        )
        parent_name, _, attr = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, attr, new)
