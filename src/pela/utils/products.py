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

import functools
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

# one row per step is bound by memory: a pass must stream more than the processor's last-level
# cache holds (`stream_bytes`: twice it, at least this much), or it times the cache instead of
# what a model larger than the cache sees (a server CPU's cache can hold 260 MB)
STREAM_BYTES = 64 * 2**20
MAX_STREAM_BYTES = 2 * 2**30
# many rows are bound by arithmetic: one weight tells
MEMORY_BOUND_ROWS = 64
# a pass calls at most this many weights: small ones are bound by each call's fixed cost
MAX_WEIGHTS = 8192
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
        for order in ("row", "column"):
            weights = _weights(o, i, order, rows, dtype, device)
            passes[which, order] = (lambda x=x, w=weights: [F.linear(x, a) for a in w],
                                    len(weights))
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


def _count(nbytes: int, rows: int, stream: int) -> int:
    """How many weights of ``nbytes`` one pass reads: enough to stream ``stream`` bytes from
    memory at a few rows, one at many."""
    if rows > MEMORY_BOUND_ROWS:
        return 1
    return min(MAX_WEIGHTS, max(1, math.ceil(stream / nbytes)))


def _measure(
    shape: tuple[int, int], rows: int, dtype: torch.dtype, device: torch.device
) -> tuple[float, float]:
    out, inp = shape
    x = torch.randn(rows, inp, dtype=dtype, device=device)
    times = []
    with torch.inference_mode():
        for order in ("row", "column"):
            weights = _weights(out, inp, order, rows, dtype, device)
            times.append(_pass_ms(lambda w=weights: [F.linear(x, a) for a in w], device)
                         / len(weights))
    return times[0], times[1]


def _weights(out: int, inp: int, order: str, rows: int, dtype: torch.dtype,
             device: torch.device) -> list[torch.Tensor]:
    """The weights one pass multiplies: out × in matrices stored in ``order``, consecutive views
    of one pool of random numbers (`_pool`), so that streaming gigabytes allocates nothing."""
    size = out * inp
    # one weight tells at many rows, and one larger than the pool streams from memory by itself:
    # numbers of its own, no pool filled
    if rows > MEMORY_BOUND_ROWS or size * dtype.itemsize > stream_bytes(device):
        pool = torch.empty(size, dtype=dtype, device=device).normal_()
    else:
        pool = _pool(dtype, device)
    count = _count(size * pool.element_size(), rows, pool.numel() * pool.element_size())
    per_pass = pool.numel() // size
    chunks = [pool[(k % per_pass) * size:(k % per_pass + 1) * size] for k in range(count)]
    if order == "row":
        return [c.view(out, inp) for c in chunks]
    return [c.view(inp, out).t() for c in chunks]  # out × in, stored by column


_POOLS: dict[tuple[torch.dtype, str], torch.Tensor] = {}


def _pool(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Random numbers to stream, `stream_bytes` of them; the last pool made is kept (filling
    one takes a second) until `release_pool`."""
    key = (dtype, str(device))
    if key not in _POOLS:
        _POOLS.clear()
        count = stream_bytes(device) // dtype.itemsize
        _POOLS[key] = torch.empty(count, dtype=dtype, device=device).normal_()
    return _POOLS[key]


def release_pool() -> None:
    """Let the pool of the last measurements go (up to twice the last-level cache of memory)."""
    _POOLS.clear()


def stream_bytes(device: torch.device) -> int:
    """What a pass at one row streams: twice the last-level cache (the CPU's, or a GPU's L2), at
    least `STREAM_BYTES`, at most `MAX_STREAM_BYTES`."""
    device = torch.device(device)
    if device.type == "cuda":
        cache = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0)
    else:
        cache = _cpu_cache_bytes()
    return min(MAX_STREAM_BYTES, max(STREAM_BYTES, 2 * cache))


@functools.cache
def _cpu_cache_bytes() -> int:
    """The largest cache Linux lists for the first CPU (0 where it lists none)."""
    sizes = [0]
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = entry.read_text().strip().upper()
            unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            sizes.append(int(text.rstrip("KMG")) * unit)
        except (OSError, ValueError):
            continue
    return max(sizes)


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
    # the bytes a pass streams: timings taken from within a cache are measured again
    stream = stream_bytes(device) >> 20
    where = f"{device_name(device)}|torch {torch.__version__}|stream {stream} MiB"
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
