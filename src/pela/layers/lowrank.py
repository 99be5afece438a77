"""`LowRankLinear`: a drop-in replacement for `nn.Linear` holding two factors, ``y = B(A x) +
b``."""

from __future__ import annotations

import torch
from torch import nn

from pela.layers.hf_modeling import LowRankLinear as _LowRankLinear
from pela.layers.hf_modeling import SharedInput
from pela.linalg import svd_factors


class LowRankLinear(_LowRankLinear):
    """A linear layer factorized as ``W ≈ B·A`` (A: rank × in, B: out × rank, bias on B).

    The factors are ordinary `nn.Linear` modules (``.a`` and ``.b``), so autocast, `torch.compile`,
    optimizers and peft LoRA treat them like any other linear layer. The layer itself is defined in
    `pela.layers.hf_modeling`, the loader `pela export` ships, so exported models build the same
    one.

    >>> layer = LowRankLinear.from_linear(nn.Linear(64, 32), rank=8)
    >>> layer(torch.randn(2, 64)).shape
    torch.Size([2, 32])
    """

    @classmethod
    def from_factors(
        cls, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None
    ) -> "LowRankLinear":
        """Build from ``A`` (rank × in), ``B`` (out × rank) and an optional bias, copying them."""
        # built on the meta device so no time is spent on a random init that is overwritten at once
        layer = cls(
            a.shape[1], b.shape[0], a.shape[0], bias=bias is not None, device="meta", dtype=a.dtype
        )
        layer.a.weight = nn.Parameter(a.detach().clone(memory_format=torch.contiguous_format))
        layer.b.weight = nn.Parameter(b.detach().clone(memory_format=torch.contiguous_format))
        if bias is not None:
            layer.b.bias = nn.Parameter(bias.detach().clone(memory_format=torch.contiguous_format))
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int) -> "LowRankLinear":
        """Factorize ``linear`` by truncated SVD at ``rank``."""

        a, b = svd_factors(linear.weight.detach(), rank)
        return cls.from_factors(a, b, None if linear.bias is None else linear.bias.detach())


def shared_input_groups(model: nn.Module) -> list[list[str]]:
    """The names of each group of layers whose ``A`` factors are stacked (`SharedInput`)."""
    groups: dict[int, SharedInput] = {}
    for m in model.modules():
        if isinstance(m, LowRankLinear) and m.shared is not None:
            groups.setdefault(id(m.shared), m.shared)
    return [g.names(model) for g in groups.values()]


def unshare_inputs(model: nn.Module) -> int:
    """Give every stacked ``A`` factor its own storage again; returns how many groups there were."""
    groups = {id(m.shared): m.shared for m in model.modules()
              if isinstance(m, LowRankLinear) and m.shared is not None}
    with torch.no_grad():
        for group in groups.values():
            for layer in group.layers:
                layer.a.weight.data = layer.a.weight.data.clone()
                layer.shared = None
    return len(groups)


def part_of_a_stack(t: torch.Tensor) -> bool:
    """Whether ``t`` is rows of a larger tensor (a stacked ``A`` factor), not all of its storage."""
    return t.untyped_storage().nbytes() != t.numel() * t.element_size()


def owned_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with each stacked ``A`` factor copied to a tensor of its own:
    safetensors writes only tensors that cover their storage. Tied weights stay one tensor."""
    state = model.state_dict()
    for name, t in state.items():
        if part_of_a_stack(t):
            state[name] = t.clone()
    return state


@torch.no_grad()
def densify(model: nn.Module) -> int:
    """Turn every `LowRankLinear` of ``model`` back into an `nn.Linear` holding ``W = B·A`` (in
    place), so that a compressed model can be compressed again, further; returns how many layers
    were merged."""
    merged = 0
    unshare_inputs(model)
    for name, layer in list(model.named_modules()):
        # (a bare LowRankLinear has no parent to be replaced in)
        if isinstance(layer, LowRankLinear) and name:
            a, b = layer.a.weight, layer.b.weight
            dense = nn.Linear(
                layer.in_features,
                layer.out_features,
                bias=layer.b.bias is not None,
                device="meta",
                dtype=a.dtype,
            )
            dense.weight = nn.Parameter(b @ a)
            if layer.b.bias is not None:
                dense.bias = nn.Parameter(layer.b.bias.detach().clone())
            dense.train(layer.training)
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, dense)
            merged += 1
    return merged
