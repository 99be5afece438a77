"""Two-tower models (CLIP, SigLIP): given one kind of input, such a model runs, trains and
classifies with the tower that reads it.
"""

from __future__ import annotations

from typing import Any, Callable, Collection

from torch import nn

# a two-tower model (CLIP, SigLIP) given one kind of input runs, trains and classifies with the
# tower that
# reads it: tower submodule -> (the input it reads, the attribute of the model's config that
# configures it)
TOWERS: dict[str, tuple[str, str]] = {
    "vision_model": ("pixel_values", "vision_config"),
    "text_model": ("input_ids", "text_config"),
}


def two_tower(model: nn.Module) -> bool:
    """True for a Hugging Face model with one tower per kind of input in `TOWERS` (CLIP, SigLIP)."""
    cfg = getattr(model, "config", None)
    return all(
        getattr(cfg, c, None) is not None and isinstance(getattr(model, t, None), nn.Module)
        for t, (_, c) in TOWERS.items()
    )


def tower_for(model: nn.Module, inputs: Collection[str]) -> str | None:
    """The tower of a two-tower model that ``inputs`` alone feed, e.g. ``vision_model`` for CLIP
    given only ``pixel_values``; None for any other model, or for inputs of both kinds."""
    fed = [t for t, (kind, _) in TOWERS.items() if kind in inputs]
    return fed[0] if len(fed) == 1 and two_tower(model) else None


def data_tower(model: nn.Module, data: Any, collate_fn: Callable) -> str | None:
    """`tower_for` the inputs a batch of ``data`` holds (one example is collated to see them); None
    without collating anything for a model that is not two-tower."""
    if not two_tower(model) or not len(data):
        return None
    return tower_for(model, set(collate_fn([data[0]])) - {"labels"})


def tower_hidden_size(model: nn.Module, tower: str) -> int | None:
    cfg = getattr(model.get_submodule(tower), "config", None) or getattr(
        model.config, TOWERS[tower][1]
    )
    return getattr(cfg, "hidden_size", None)


class TowerView(nn.Module):
    """One tower of a two-tower model as a model of its own, for training it on inputs of one kind.

    Only the tower is a submodule, so an optimizer (and DistributedDataParallel) built on the view
    sees the tower's parameters, which are the full model's own, and nothing of the other tower.
    """

    def __init__(self, model: nn.Module, tower: str):
        super().__init__()
        self.tower = model.get_submodule(tower)

    def forward(self, *args, **kwargs) -> Any:
        return self.tower(*args, **kwargs)
