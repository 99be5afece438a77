"""Weights stored in the order the device reads fastest: measured per shape, cached per device.

A linear layer computes ``x·Wᵀ`` with ``W`` (out × in) stored row by row, PyTorch's default. The
same product can read ``W`` column by column instead (``Wᵀ`` stored contiguously), and which order
the BLAS library runs faster depends on the shape, on how many rows ``x`` has, on the library and
on the processor: one token at a time, a thin low-rank factor (out ≫ in) or a wide vocabulary head
can stream at twice the speed in one order than in the other on one CPU and not at all on another.
So pela does not guess: :func:`tune_layout` takes, for every weight shape a model has, the time of
its product in each order at the rows it will serve (`pela.utils.products.product_ms`: measured
once per device, cached) and keeps the faster. The numbers stay the same (the products may round
differently); weights shared between modules, such as a tied embedding and head, stay shared.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from pela.errors import PelaError
from pela.layers.int8 import int8_mode
from pela.layers.lowrank import part_of_a_stack
from pela.utils.products import order_of, product_ms, release_pool

# the other order is kept only when it is clearly faster, not within a timing's noise
MARGIN = 0.05


@dataclass
class LayoutChoice:
    """What was measured for the weights of one shape, and the order they were left in."""

    shape: tuple[int, int]  # out × in
    count: int  # weights of this shape in the model
    row_ms: float  # one product, the weight stored row by row (PyTorch's default)
    column_ms: float  # the same product, the weight stored column by column
    order: str  # "row" or "column"


def tune_layout(
    model: nn.Module, rows: int = 1, *, cache: bool = True, margin: float = MARGIN
) -> list[LayoutChoice]:
    """Store each linear weight of ``model`` (in place) in the order its products run fastest
    with ``rows`` input rows (a batch of one token: 1; a batch of prompts: batch × length), on
    the device and dtype the model is on now. Returns one :class:`LayoutChoice` per shape.

    >>> choices = tune_layout(nn.Sequential(nn.Linear(8, 64), nn.Linear(64, 8)), cache=False)
    >>> sorted(c.shape for c in choices)
    [(8, 64), (64, 8)]
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if int8_mode(model) is not None:
        raise PelaError("the model holds int8 weights (pela.quantize_int8), whose layout torchao "
                        "chose: tune the layout of the float model")
    choices = []
    for (shape, dtype, device), weights in _weights_by_shape(model).items():
        row_ms, column_ms = product_ms(shape, rows, dtype, device, cache=cache)
        order = "column" if column_ms < row_ms * (1 - margin) else "row"
        for w in weights:
            _store(w, order)
        choices.append(LayoutChoice(shape, len(weights), row_ms, column_ms, order))
    release_pool()
    return choices


@contextlib.contextmanager
def laid_out(model: nn.Module, rows: int = 1) -> Iterator[None]:
    """`tune_layout` for the duration of a ``with`` block: every linear weight the model holds
    when the block ends, and every one it held when it began, is stored as it was before (weights
    first seen inside the block, row by row)."""
    before = {id(w): (w, order_of(w)) for ws in _weights_by_shape(model).values() for w in ws}
    tune_layout(model, rows)
    try:
        yield
    finally:
        now = {id(w): w for ws in _weights_by_shape(model).values() for w in ws}
        for key, w in now.items():
            _store(w, before.get(key, (w, "row"))[1])
        for key, (w, order) in before.items():
            if key not in now:
                _store(w, order)


def _weights_by_shape(model: nn.Module) -> dict[tuple, list[nn.Parameter]]:
    groups: dict[tuple, list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module in model.modules():
        w = getattr(module, "weight", None)
        if not isinstance(module, nn.Linear) or not isinstance(w, nn.Parameter):
            continue
        if w.dim() != 2 or not w.is_floating_point() or w.is_meta or id(w) in seen:
            continue
        if part_of_a_stack(w):
            continue  # rows of a larger matrix (`pela.pack`): they stay where they are
        seen.add(id(w))  # a weight shared by two layers is stored once
        groups.setdefault((tuple(w.shape), w.dtype, w.device), []).append(w)
    return groups


@torch.no_grad()
def _store(weight: nn.Parameter, order: str) -> None:
    if order_of(weight) == order:
        return
    # .data keeps the Parameter object: modules sharing it and optimizers holding it see the change
    data = weight.data
    weight.data = data.t().contiguous().t() if order == "column" else data.contiguous()
