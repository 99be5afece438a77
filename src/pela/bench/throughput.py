"""Throughput and memory of one model, or of several side by side (interleaved, so noise hits all
alike), in PyTorch and, if asked, in ONNX Runtime."""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pela.arch.inputs import DEFAULT_BATCH, DEFAULT_SEQ_LEN, example_inputs, linear_rows
from pela.bench.peak_memory import eager_peak_bytes
from pela.bench.settings import COMPILE_MODES, DTYPES, check_length, lay_out
from pela.deploy.onnx import named_inputs
from pela.deploy.onnx_runs import onnx_runs
from pela.errors import PelaError
from pela.layers.int8 import quantize_int8, stored_bytes
from pela.utils.device import resolve_device, synchronize
from pela.utils.progress import progress_bar


@dataclass
class BenchResult:
    name: str
    params: int
    items_per_s: float
    ms_per_batch: float
    # tensors live at once: weights, inputs, activations (None: not counted, ONNX Runtime)
    peak_memory_bytes: int | None
    batch_size: int
    device: str
    dtype: str
    compiled: bool
    compile_mode: str | None = None
    # every round's ms per batch; ms_per_batch is their median
    round_ms: list[float] = field(default_factory=list)
    # what one batch was (text is cut to the model's positions)
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    # linear weights `tune_layout` stored column by column for this device (None: not tuned)
    column_weights: int | None = None
    runtime: str = "pytorch"  # or pytorch int8 (torchao), onnxruntime, onnxruntime int8
    file_bytes: int | None = None  # the weights (PyTorch) or the graph file (ONNX Runtime)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_for(
    model: nn.Module, batch_size: int, seq_len: int, device: torch.device, dtype: torch.dtype
) -> tuple[tuple, dict]:
    """A random batch shaped for ``model`` as ``(args, kwargs)``, its floating-point tensors in
    ``dtype``."""
    inputs = example_inputs(model, batch_size, seq_len, device)

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if t.is_floating_point() else t  # token ids stay integers

    if isinstance(inputs, tuple):
        return tuple(cast(t) for t in inputs), {}
    return (), {k: cast(v) for k, v in inputs.items()}


def benchmark(
    models: dict[str, nn.Module],
    *,
    batch_size: int = DEFAULT_BATCH,
    device: str = "cpu",
    dtype: str = "float32",
    compile: bool = False,
    seq_len: int | None = None,
    warmup: int = 2,
    iters: int = 5,
    rounds: int = 3,
    compile_mode: str | None = None,
    progress: bool = False,
    tune: bool = True,
    onnx: bool = False,
    int8: bool = False,
) -> list[BenchResult]:
    """Measure inference throughput of each model on inputs shaped for it.

    Peak memory is ``torch.cuda.max_memory_allocated`` over the warm-up passes on a GPU, and on a
    CPU the tensors of one more, eager pass (:func:`eager_peak_bytes`).

    ``compile`` runs both models through ``torch.compile`` (``compile_mode`` picks its mode, e.g.
    ``max-autotune`` to let Inductor time GEMM kernels for the thin factorized products; it implies
    ``compile``). ``progress`` shows a bar over the forward passes on stderr, redrawn only between
    timed rounds so that it takes no CPU while one is measured.

    ``tune`` first stores every model's linear weights in the order this device multiplies
    fastest at the batch's shape (:func:`pela.layers.storage_order.tune_layout`; the same numbers).
    ``onnx`` also times each model in ONNX Runtime, float32 and int8 (`pela.deploy.onnx_runs`: the
    same batch; CPU, float32 models), each a result of its own (``runtime``, ``file_bytes``).
    ``int8`` also times each model with int8 weights in PyTorch (`pela.quantize_int8`, torchao:
    runtime ``pytorch int8``), compiled when the float one is.

    Each of ``rounds`` rounds runs every model for ``iters`` forward passes in turn; a model's
    figure is its median round, so a slow spell of a noisy machine does not favour one model. Every
    round's time is kept in ``round_ms``: their spread says how far to trust one run.
    """
    _check_benchmark(models, batch_size, iters, rounds, seq_len, dtype, compile_mode, onnx, device)
    seq_len = seq_len or DEFAULT_SEQ_LEN
    compile = compile or compile_mode is not None
    dev, dt = resolve_device(device), DTYPES[dtype]
    extra = 1 if dev.type == "cpu" else 0  # the pass that counts memory
    per_run = warmup + extra + rounds * iters
    per_model = per_run * (2 if int8 else 1) + (2 * (1 + rounds * iters) if onnx else 0)
    bar = progress_bar(
        progress, len(models) * per_model, "benchmarking", redraw_only_on_advance=True
    )
    with tempfile.TemporaryDirectory(prefix="pela-bench-") as work, bar as advance:
        runners = []
        for name, model in models.items():
            model = model.eval().to(dev, dt)  # outside inference mode: parameters stay parameters
            timed = {"pytorch": model}
            if int8:
                timed["pytorch int8"] = quantize_int8(copy.deepcopy(model))
            for runtime, m in timed.items():
                runners.append(_pytorch_runner(name, m, batch_size, seq_len, dev, dt, tune, compile,
                                               compile_mode, warmup, advance, runtime))
            if onnx:
                runners += _onnx_runners(
                    name, model, batch_size, seq_len, Path(work) / name, advance
                )
        times = _timed_rounds(runners, rounds, iters, dev, advance)
    return [
        _result(r, times[i], batch_size, dev, dtype, compile, compile_mode)
        for i, r in enumerate(runners)
    ]


@dataclass
class _Runner:
    """One model in one runtime, ready to time."""

    name: str
    runtime: str
    call: Callable[[], Any]
    params: int
    peak: int | None
    file_bytes: int
    shapes: dict[str, list[int]]
    columns: int | None = None


def _check_benchmark(
    models: dict[str, nn.Module],
    batch_size: int,
    iters: int,
    rounds: int,
    seq_len: int | None,
    dtype: str,
    compile_mode: str | None,
    onnx: bool,
    device: str,
) -> None:
    if batch_size < 1:
        raise PelaError(f"batch size must be >= 1, got {batch_size}")
    if iters < 1 or rounds < 1 or (seq_len is not None and seq_len < 1):
        raise PelaError(
            f"iters, rounds and seq_len must be >= 1, got {iters}, {rounds} and {seq_len}"
        )
    for name, model in models.items():
        check_length(name, model, seq_len, "sequence length")
    if dtype not in DTYPES:
        raise PelaError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        modes = ", ".join(COMPILE_MODES)
        raise PelaError(f"compile mode must be one of {modes}, got {compile_mode!r}")
    if onnx and (dtype != "float32" or resolve_device(device).type != "cpu"):
        raise PelaError(
            "ONNX Runtime is measured on the CPU in float32: leave --device and --dtype"
        )


def _pytorch_runner(
    name: str,
    model: nn.Module,
    batch_size: int,
    seq_len: int,
    dev: torch.device,
    dt: torch.dtype,
    tune: bool,
    compile: bool,
    compile_mode: str | None,
    warmup: int,
    advance: Callable,
    runtime: str = "pytorch",
) -> _Runner:
    """``model`` laid out, compiled if asked, warmed up and its peak memory counted."""
    args, kwargs = batch_for(model, batch_size, seq_len, dev, dt)
    columns = lay_out(model, linear_rows(model, args, kwargs)) if tune else None
    fn = torch.compile(model, mode=compile_mode) if compile else model
    shapes = {f"arg{i}": list(t.shape) for i, t in enumerate(args)}
    shapes |= {k: list(v.shape) for k, v in kwargs.items()}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with torch.inference_mode():
        for _ in range(warmup):
            fn(*args, **kwargs)
            advance(info=f"warm-up {name}")
    synchronize(dev)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev)
    else:
        peak = eager_peak_bytes(model, args, kwargs)
        advance(info=f"memory of {name}")
    params = sum(p.numel() for p in model.parameters())
    return _Runner(
        name,
        runtime,
        lambda: fn(*args, **kwargs),
        params,
        peak,
        _weight_bytes(model),
        shapes,
        columns,
    )


def _onnx_runners(
    name: str, model: nn.Module, batch_size: int, seq_len: int, work: Path, advance: Callable
) -> list[_Runner]:
    params = sum(p.numel() for p in model.parameters())
    shapes = {k: list(v.shape) for k, v in named_inputs(model, batch_size, seq_len)[0].items()}
    runners = []
    for run in onnx_runs(model, batch_size, seq_len, work):
        run.run()  # warm-up
        advance(info=f"warm-up {name} ({run.runtime})")
        runners.append(_Runner(name, run.runtime, run.run, params, run.peak_bytes, run.file_bytes,
                               shapes))
    return runners


def _timed_rounds(
    runners: list[_Runner], rounds: int, iters: int, dev: torch.device, advance: Callable
) -> list[list[float]]:
    """Seconds per call of each runner, one entry per round; the runners take turns."""
    times: list[list[float]] = [[] for _ in runners]
    with torch.inference_mode():
        for r in range(rounds):
            for i, runner in enumerate(runners):
                synchronize(dev)
                start = time.perf_counter()
                for _ in range(iters):
                    runner.call()
                synchronize(dev)
                times[i].append((time.perf_counter() - start) / iters)
                advance(iters, info=f"round {r + 1}/{rounds}")  # after the clock stops
    return times


def _result(
    r: _Runner,
    times: list[float],
    batch_size: int,
    dev: torch.device,
    dtype: str,
    compile: bool,
    compile_mode: str | None,
) -> BenchResult:
    sec = statistics.median(times)
    compiled = compile and r.runtime.startswith("pytorch")
    return BenchResult(
        r.name,
        r.params,
        batch_size / sec,
        sec * 1000,
        r.peak,
        batch_size,
        str(dev),
        dtype,
        compiled,
        compile_mode if compiled else None,
        [t * 1000 for t in times],
        r.shapes,
        r.columns,
        r.runtime,
        r.file_bytes,
    )


def _weight_bytes(model: nn.Module) -> int:
    """What the model's weights take, each tensor once (a saved file holds about this)."""
    unique = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(stored_bytes(t) for t in unique.values())
