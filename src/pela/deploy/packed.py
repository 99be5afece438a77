"""Packed execution: low-rank layers that read the same input multiply their first factors once.

Attention's q, k and v projections (and an MLP's gate and up) each multiply the same hidden states
by a matrix; factorized, each does it with its own thin ``A`` first. Stacked, those ``A`` are one
product: fewer, larger matrix calls, which is what a token-at-a-time decoder spends its time on
(every call has a fixed cost). Which layers share an input is found by running the model once and
watching which layers receive the same tensor, so any architecture's groups are found, with no list
of layer names to keep up to date. The stack is exact (the same numbers, in one product), survives
`pela.save_pretrained` / `pela.load` and `pela export` (pela.json and the exported config record the
groups), and is used only where it computes what the layers would: not while gradients flow to the
factors, nor through an adapter or a hook on them.
"""

from __future__ import annotations

import torch
from torch import nn

from pela.arch.inputs import example_inputs
from pela.errors import PelaError
from pela.layers.hf_modeling import share_inputs
from pela.layers.int8 import int8_mode
from pela.layers.lowrank import LowRankLinear, shared_input_groups, unshare_inputs
from pela.utils.device import model_device


@torch.no_grad()
def find_shared_inputs(model: nn.Module, inputs: tuple | dict | None = None) -> list[list[str]]:
    """Groups (two or more) of `LowRankLinear` layers of ``model`` that receive the same input
    tensor in one forward pass on ``inputs`` (default: a small random batch shaped for it)."""
    if inputs is None:
        device = model_device(model)
        inputs = example_inputs(model, 1, 8, device)
    names = {id(m): n for n, m in model.named_modules() if isinstance(m, LowRankLinear)}
    seen: list[tuple[torch.Tensor, list[str]]] = []  # each input kept alive: ids are not reused

    def hook(module: nn.Module, args: tuple) -> None:
        x = args[0] if args else None
        for tensor, group in seen:
            if tensor is x:
                group.append(names[id(module)])
                return
        seen.append((x, [names[id(module)]]))

    was_training = model.training
    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if id(m) in names]
    try:
        model.eval()
        model(*inputs) if isinstance(inputs, tuple) else model(**inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [_unique(group) for _, group in seen if len(_unique(group)) > 1]


def pack(model: nn.Module, inputs: tuple | dict | None = None) -> list[list[str]]:
    """Stack the ``A`` factors of every group of low-rank layers that read the same input (in
    place); returns the groups, by layer name. Packing again finds the groups anew.

    >>> from pela import LowRankLinear
    >>> class Attention(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.q, self.k = (LowRankLinear.from_linear(nn.Linear(16, 16), 4) for _ in "qk")
    ...     def forward(self, x):
    ...         return self.q(x) * self.k(x)
    >>> pack(Attention(), (torch.randn(1, 16),))
    [['q', 'k']]
    """
    if int8_mode(model) is not None:
        raise PelaError("the model holds int8 weights (pela.quantize_int8): pack it before "
                        "quantizing, or run it unpacked")
    unshare_inputs(model)
    groups = [g for g in find_shared_inputs(model, inputs) if _stackable(model, g)]
    share_inputs(model, groups)
    return shared_input_groups(model)


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))  # a layer called twice on one input counts once


def _stackable(model: nn.Module, names: list[str]) -> bool:
    a = [model.get_submodule(n).a.weight for n in names]
    return all(w.dtype == a[0].dtype and w.device == a[0].device for w in a)
