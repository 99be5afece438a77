"""How long this device takes for one matrix product ``x·Wᵀ``, measured once and cached.

What a product costs depends on the shape of ``W``, on how many rows ``x`` has, on how ``W`` is
stored (row by row, PyTorch's default, or column by column), on the BLAS library and on the
processor; no formula predicts it well across machines (one token at a time, per-call costs and how
a library splits the work weigh as much as the bytes read). So pela measures: `product_ms` times a
pass over enough random weights of the shape to stream from memory as a model's do, in each storage
order, and keeps the result in pela's cache keyed by device, threads, torch version, dtype, rows and
shape. `pela.tune_layout` picks each weight's order from it; `pela.compress` compares a layer's
dense product with its two factors'.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from pela.errors import PelaError
from pela.utils.device import synchronize
from pela.utils.files import atomic_write_text, cache_dir

# one row per step is bound by memory: a pass must stream about this much, more than a
# processor's last-level cache holds, or it times the cache instead of what the model sees
STREAM_BYTES = 64 * 2**20
# many rows are bound by arithmetic: one weight tells
MEMORY_BOUND_ROWS = 64
# small weights are bound by each call's fixed cost, not by memory: this many tell
MAX_WEIGHTS = 512
# a pass is repeated until it takes this long, then the median of three counts
MIN_PASS_S = 0.02


def product_ms(
    shape: tuple[int, int], rows: int, dtype: torch.dtype, device: torch.device, cache: bool = True
) -> tuple[float, float]:
    """Milliseconds of one product of ``rows`` rows by a ``shape`` (out × in) weight, stored by
    row and by column."""
    device = torch.device(device)
    key = _key(shape, rows, dtype, device)
    return _cached(key, lambda: _measure(shape, rows, dtype, device), cache)


def factored_ms(
    shape: tuple[int, int], rank: int, rows: int, dtype: torch.dtype, device: torch.device,
    cache: bool = True,
) -> tuple[float, float]:
    """Milliseconds of one product of ``rows`` rows by a ``shape`` (out × in) weight, and by its two
    factors (rank × in, then out × rank), each stored in its faster order. The three are timed in
    turns, round after round, so that a busy spell of the machine weighs on both sides alike."""
    device = torch.device(device)
    key = _key(shape, rows, dtype, device) + f" rank {rank}"
    return _cached(key, lambda: _measure_factored(shape, rank, rows, dtype, device), cache)


def order_of(weight: torch.Tensor) -> str:
    """``row`` or ``column``: how a 2-D weight is stored."""
    return "column" if weight.dim() == 2 and weight.stride() == (1, weight.shape[0]) else "row"


def _cached(key: str, measure, cache: bool) -> tuple[float, float]:
    """The timing under ``key`` in pela's cache, measured (and kept) if it is not there."""
    known = _read_cache() if cache else {}
    if key not in known:
        known[key] = measure()
        if cache:
            _write_cache(known)
    return known[key]


def _measure_factored(
    shape: tuple[int, int], rank: int, rows: int, dtype: torch.dtype, device: torch.device
) -> tuple[float, float]:
    out, inp = shape
    passes = {}  # (which, order) -> a pass and how many products it makes
    for which, (o, i) in {"dense": (out, inp), "a": (rank, inp), "b": (out, rank)}.items():
        x = torch.randn(rows, i, dtype=dtype, device=device)
        count = _count(o * i * x.element_size(), rows)
        for order in ("row", "column"):
            weights = [_weight(o, i, order, dtype, device) for _ in range(count)]
            passes[which, order] = (lambda x=x, w=weights: [F.linear(x, a) for a in w], count)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in passes}
    with torch.inference_mode():
        for _ in range(3):  # rounds: every pass once in each
            for k, (run, count) in passes.items():
                times[k].append(_pass_ms(run, device, repeats=1) / count)
    best = {
        w: min(statistics.median(times[w, order]) for order in ("row", "column"))
        for w in ("dense", "a", "b")
    }
    return best["dense"], best["a"] + best["b"]


def _count(nbytes: int, rows: int) -> int:
    """How many weights of ``nbytes`` one pass reads: enough to stream from memory at a few rows,
    one at many."""
    if rows > MEMORY_BOUND_ROWS:
        return 1
    return min(MAX_WEIGHTS, max(1, math.ceil(STREAM_BYTES / nbytes)))


def _measure(
    shape: tuple[int, int], rows: int, dtype: torch.dtype, device: torch.device
) -> tuple[float, float]:
    out, inp = shape
    count = _count(out * inp * torch.empty((), dtype=dtype).element_size(), rows)
    x = torch.randn(rows, inp, dtype=dtype, device=device)
    times = []
    with torch.inference_mode():
        for order in ("row", "column"):
            weights = [_weight(out, inp, order, dtype, device) for _ in range(count)]
            times.append(_pass_ms(lambda w=weights: [F.linear(x, a) for a in w], device) / count)
            del weights
    return times[0], times[1]


def _weight(
    out: int, inp: int, order: str, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    if order == "row":
        return torch.randn(out, inp, dtype=dtype, device=device)
    return torch.randn(inp, out, dtype=dtype, device=device).t()  # out × in, stored by column


def _pass_ms(run, device: torch.device, repeats: int = 3) -> float:
    def clock(reps: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(reps):
            run()
        synchronize(device)
        return (time.perf_counter() - start) / reps

    clock(1)  # warm-up: first calls pick kernels and fault pages in
    reps = max(1, math.ceil(MIN_PASS_S / max(clock(1), 1e-6)))
    return statistics.median(clock(reps) for _ in range(repeats)) * 1e3


# ---------------------------------------------------------------- the cache of timings
def device_name(device: torch.device) -> str:
    """The processor or GPU, and for a CPU the threads torch uses: what a timing holds for."""
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


def _key(shape: tuple[int, int], rows: int, dtype: torch.dtype, device: torch.device) -> str:
    where = f"{device_name(device)}|torch {torch.__version__}"
    return f"{where}|{dtype}|{rows} rows|{shape[0]}x{shape[1]}"


def cache_file() -> Path:
    return cache_dir() / "products" / "timings.json"


def _read_cache() -> dict[str, tuple[float, float]]:
    try:
        data = json.loads(cache_file().read_text())
        return {k: (float(v[0]), float(v[1])) for k, v in data.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        return {}  # none yet, or unreadable: measured again


def _write_cache(known: dict[str, tuple[float, float]]) -> None:
    try:
        atomic_write_text(cache_file(), json.dumps(known, indent=1, sort_keys=True))
    except PelaError:  # a read-only cache costs time next run, never this run's result
        pass
