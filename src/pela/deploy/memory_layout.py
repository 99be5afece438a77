"""Weights stored in the order the device reads fastest: measured per shape, cached per device.

A linear layer computes ``x·Wᵀ`` with ``W`` (out × in) stored row by row, PyTorch's default. The
same product can read ``W`` column by column instead (``Wᵀ`` stored contiguously), and which order
the BLAS library runs faster depends on the shape, on how many rows ``x`` has, on the library and
on the processor: one token at a time, a thin low-rank factor (out ≫ in) or a wide vocabulary head
can stream at twice the speed in one order than in the other on one CPU and not at all on another.
So pela does not guess: :func:`tune_layout` times, for every weight shape a model has, one pass
over the model's weights of that shape in each order, at the rows it will serve, and keeps the
faster. The numbers stay the same (the products may round differently); weights shared between
modules, such as a tied embedding and head, stay shared. Timings are kept in pela's cache, keyed
by device, threads, dtype, rows and shape, so a model is measured once per machine.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from pela.errors import PelaError
from pela.utils.files import atomic_write_text, cache_dir

# one row per step is bound by memory: a pass must stream about this much, more than a
# processor's last-level cache holds, or it times the cache instead of what the model sees
STREAM_BYTES = 64 * 2**20
# a pass is repeated until it takes this long, then the median of three counts
MIN_PASS_S = 0.02
# the other order is kept only when it is clearly faster, not within a timing's noise
MARGIN = 0.05


@dataclass
class LayoutChoice:
    """What was measured for the weights of one shape, and the order they were left in."""

    shape: tuple[int, int]  # out × in
    count: int  # weights of this shape in the model
    row_ms: float  # one pass over the timed weights, stored row by row (PyTorch's default)
    column_ms: float  # the same pass, stored column by column
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
    known = _read_cache() if cache else {}
    choices = []
    for (shape, dtype, device), weights in _weights_by_shape(model).items():
        key = _key(shape, dtype, device, rows, _timed_count(weights, rows))
        if key not in known:
            known[key] = _measure(weights, rows)
            if cache:
                _write_cache(known)
        row_ms, column_ms = known[key]
        order = "column" if column_ms < row_ms * (1 - margin) else "row"
        for w in weights:
            _store(w, order)
        choices.append(LayoutChoice(shape, len(weights), row_ms, column_ms, order))
    return choices


def order_of(weight: torch.Tensor) -> str:
    """``row`` or ``column``: how a 2-D weight is stored."""
    return "column" if weight.dim() == 2 and weight.stride() == (1, weight.shape[0]) else "row"


def _weights_by_shape(model: nn.Module) -> dict[tuple, list[nn.Parameter]]:
    groups: dict[tuple, list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module in model.modules():
        w = getattr(module, "weight", None)
        if not isinstance(module, nn.Linear) or not isinstance(w, nn.Parameter):
            continue
        if w.dim() != 2 or not w.is_floating_point() or w.is_meta or id(w) in seen:
            continue
        if w.untyped_storage().nbytes() != w.numel() * w.element_size():
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


def _timed_count(weights: list[nn.Parameter], rows: int) -> int:
    """How many of the weights one pass reads: enough to stream from memory at a few rows;
    one at many rows, where the arithmetic, not the memory, bounds a product."""
    if rows > 64:
        return 1
    each = weights[0].numel() * weights[0].element_size()
    return min(len(weights), max(1, math.ceil(STREAM_BYTES / each)))


@torch.no_grad()
def _measure(weights: list[nn.Parameter], rows: int) -> tuple[float, float]:
    """Milliseconds of one pass over the timed weights in row and in column order."""
    timed = weights[: _timed_count(weights, rows)]
    w0 = timed[0]
    x = torch.randn(rows, w0.shape[1], dtype=w0.dtype, device=w0.device)
    before = [order_of(w) for w in timed]
    times = []
    for order in ("row", "column"):
        for w in timed:
            _store(w, order)
        times.append(_pass_ms(lambda: [F.linear(x, w) for w in timed], w0.device))
    for w, order in zip(timed, before):
        _store(w, order)
    return times[0], times[1]


def _pass_ms(run, device: torch.device) -> float:
    def clock(reps: int) -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            run()
        _sync(device)
        return (time.perf_counter() - start) / reps

    clock(1)  # warm-up: first calls pick kernels and fault pages in
    reps = max(1, math.ceil(MIN_PASS_S / max(clock(1), 1e-6)))
    return statistics.median(clock(reps) for _ in range(3)) * 1e3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the cache of timings
def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{_cpu_name()} x{torch.get_num_threads()} threads"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _key(shape: tuple, dtype: torch.dtype, device: torch.device, rows: int, count: int) -> str:
    what = f"{_device_name(device)}|torch {torch.__version__}|{dtype}|{rows} rows"
    return f"{what}|{shape[0]}x{shape[1]} x{count}"


def _cache_file() -> Path:
    return cache_dir() / "layout" / "timings.json"


def _read_cache() -> dict[str, tuple[float, float]]:
    try:
        data = json.loads(_cache_file().read_text())
        return {k: (float(v[0]), float(v[1])) for k, v in data.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        return {}  # none yet, or unreadable: measured again


def _write_cache(known: dict[str, tuple[float, float]]) -> None:
    try:
        atomic_write_text(_cache_file(), json.dumps(known, indent=1, sort_keys=True))
    except PelaError:  # a read-only cache costs time next run, never this run's result
        pass



class _Seen(Exception):
    pass


@torch.no_grad()
def linear_rows(model: nn.Module, args: tuple, kwargs: dict) -> int:
    """How many rows the first linear layer of ``model`` multiplies on these inputs (batch ×
    tokens for a Transformer); the forward pass stops there."""
    rows = []

    def hook(module: nn.Module, inputs: tuple) -> None:
        rows.append(inputs[0].numel() // inputs[0].shape[-1])
        raise _Seen

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    handles = [m.register_forward_pre_hook(hook) for m in linears]
    try:
        model(*args, **kwargs)
    except _Seen:
        pass
    finally:
        for h in handles:
            h.remove()
    if not rows:
        raise ValueError(f"{type(model).__name__} ran no linear layer on these inputs")
    return rows[0]
