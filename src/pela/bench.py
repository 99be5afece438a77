"""Throughput and memory of one model, or of several side by side (interleaved, so noise hits all
alike)."""

from __future__ import annotations

import statistics
import time
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from pela.arch import is_causal_lm
from pela.arch.inputs import example_inputs, input_kinds
from pela.arch.properties import max_positions
from pela.deploy.memory_layout import linear_rows, order_of, tune_layout
from pela.errors import PelaError
from pela.utils.device import resolve_device
from pela.utils.progress import progress_bar

# text models' sequence length unless told, cut to the model's positions where it takes fewer
DEFAULT_SEQ_LEN = 128
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# torch.compile's
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class BenchResult:
    name: str
    params: int
    items_per_s: float
    ms_per_batch: float
    peak_memory_bytes: int  # tensors live at once: weights, inputs, activations
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_length(name: str, model: nn.Module, tokens: int | None, what: str) -> None:
    """Refuse ``tokens`` of text beyond what a text model takes (instead of quietly measuring
    fewer)."""
    limit = max_positions(model)
    if tokens is not None and limit is not None and "text" in input_kinds(model) and tokens > limit:
        raise PelaError(f"a {what} of {tokens} tokens is more than {name} takes: at most {limit} positions")


def _tune(model: nn.Module, rows: int) -> int:
    """Lay ``model``'s weights out for ``rows`` input rows; how many are now stored by column."""
    tune_layout(model, rows)
    linears = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    return sum(order_of(w) == "column" for w in {id(w): w for w in linears}.values())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _TensorBytes(TorchDispatchMode):
    """The bytes of the tensor storages alive, and the most alive at once: each operator's outputs
    count from when it makes them until they are freed. A CPU has no allocator statistics to ask, as
    CUDA has; this sees what the model holds, not a kernel's scratch space or the C allocator's
    cache."""

    def __init__(self, tensors: list[torch.Tensor]):
        super().__init__()
        # storage -> bytes, forgotten when it is freed
        self.sizes: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.live = self.peak = 0
        self.finalizers: list[weakref.finalize] = []
        for t in tensors:
            self._add(t)

    def _add(self, t: torch.Tensor) -> None:
        if t.layout != torch.strided:  # sparse or nested tensors: no one storage to count
            return
        storage = t.untyped_storage()  # views of one storage count once
        if storage not in self.sizes:
            self.sizes[storage] = n = storage.nbytes()
            self.live += n
            self.peak = max(self.peak, self.live)
            self.finalizers.append(weakref.finalize(storage, self._free, n))

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out


def eager_peak_bytes(model: nn.Module, args: tuple, kwargs: dict) -> int:
    """Bytes of the tensors live at once during one eager forward pass: weights, inputs and the
    largest set of activations, which is what ``torch.cuda.max_memory_allocated`` reports on a
    GPU."""
    tensors = [*model.parameters(), *model.buffers(), *(t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor))]
    counter = _TensorBytes(tensors)
    with torch.inference_mode(), counter:
        model(*args, **kwargs)
    for f in counter.finalizers:  # the weights outlive the count: leave nothing attached to them
        f.detach()
    return counter.peak


def batch_for(model: nn.Module, batch_size: int, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[tuple, dict]:
    """A random batch shaped for ``model`` as ``(args, kwargs)``, its floating-point tensors in
    ``dtype``."""
    inputs = example_inputs(model, batch_size, seq_len, device)
    cast = lambda t: t.to(dtype) if t.is_floating_point() else t  # noqa: E731  (token ids stay integers)
    if isinstance(inputs, tuple):
        return tuple(cast(t) for t in inputs), {}
    return (), {k: cast(v) for k, v in inputs.items()}


def benchmark(models: dict[str, nn.Module], *, batch_size: int = 32, device: str = "cpu", dtype: str = "float32",
              compile: bool = False, seq_len: int | None = None, warmup: int = 2, iters: int = 5, rounds: int = 3,
              compile_mode: str | None = None, progress: bool = False, tune: bool = True) -> list[BenchResult]:
    """Measure inference throughput of each model on inputs shaped for it.

    Peak memory is ``torch.cuda.max_memory_allocated`` over the warm-up passes on a GPU, and on a
    CPU the tensors of one more, eager pass (:func:`eager_peak_bytes`).

    ``compile`` runs both models through ``torch.compile`` (``compile_mode`` picks its mode, e.g.
    ``max-autotune`` to let Inductor time GEMM kernels for the thin factorized products; it implies
    ``compile``). ``progress`` shows a bar over the forward passes on stderr, redrawn only between
    timed rounds so that it takes no CPU while one is measured.

    ``tune`` first stores every model's linear weights in the order this device multiplies
    fastest at the batch's shape (:func:`pela.deploy.memory_layout.tune_layout`; the same numbers).

    Each of ``rounds`` rounds runs every model for ``iters`` forward passes in turn; a model's
    figure is its median round, so a slow spell of a noisy machine does not favour one model. Every
    round's time is kept in ``round_ms``: their spread says how far to trust one run.
    """
    if batch_size < 1:
        raise PelaError(f"batch size must be >= 1, got {batch_size}")
    if iters < 1 or rounds < 1 or (seq_len is not None and seq_len < 1):
        raise PelaError(f"iters, rounds and seq_len must be >= 1, got {iters}, {rounds} and {seq_len}")
    for name, model in models.items():
        check_length(name, model, seq_len, "sequence length")
    seq_len = seq_len or DEFAULT_SEQ_LEN
    if dtype not in DTYPES:
        raise PelaError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise PelaError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
    compile = compile or compile_mode is not None
    dev, dt = resolve_device(device), DTYPES[dtype]
    runners, peaks, shapes, columns = {}, {}, {}, {}
    times: dict[str, list[float]] = {name: [] for name in models}
    extra = 1 if dev.type == "cpu" else 0  # the pass that counts memory
    with progress_bar(progress, len(models) * (warmup + extra + rounds * iters), "benchmarking", redraw_only_on_advance=True) as advance:
        for name, model in models.items():
            # outside inference mode, so the parameters stay ordinary tensors
            model = model.eval().to(dev, dt)
            args, kwargs = batch_for(model, batch_size, seq_len, dev, dt)
            columns[name] = _tune(model, linear_rows(model, args, kwargs)) if tune else None
            fn = torch.compile(model, mode=compile_mode) if compile else model
            runners[name] = (fn, args, kwargs)
            shapes[name] = {f"arg{i}": list(t.shape) for i, t in enumerate(args)} | {k: list(v.shape) for k, v in kwargs.items()}
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            with torch.inference_mode():
                for _ in range(warmup):
                    fn(*args, **kwargs)
                    advance(info=f"warm-up {name}")
            _sync(dev)
            if dev.type == "cuda":
                peaks[name] = torch.cuda.max_memory_allocated(dev)
            else:
                peaks[name] = eager_peak_bytes(model, args, kwargs)
                advance(info=f"memory of {name}")
        with torch.inference_mode():
            for r in range(rounds):
                for name, (fn, args, kwargs) in runners.items():
                    _sync(dev)
                    start = time.perf_counter()
                    for _ in range(iters):
                        fn(*args, **kwargs)
                    _sync(dev)
                    times[name].append((time.perf_counter() - start) / iters)
                    advance(iters, info=f"round {r + 1}/{rounds}")  # after the clock stops
    results = []
    for name, model in models.items():
        sec = statistics.median(times[name])
        params = sum(p.numel() for p in model.parameters())
        results.append(BenchResult(name, params, batch_size / sec, sec * 1000, peaks[name], batch_size, str(dev), dtype, compile, compile_mode,
                                   [t * 1000 for t in times[name]], shapes[name], columns[name]))
    return results


@dataclass
class GenerationResult:
    """How fast a causal language model reads a prompt (prefill) and writes after it (decode, one
    token at a time)."""

    name: str
    params: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    prefill_ms: float  # one batch of prompts, median of the rounds
    decode_ms_per_token: float  # one new token for the whole batch, median of the rounds
    batch_size: int
    prompt_tokens: int
    new_tokens: int
    device: str
    dtype: str
    compiled: bool = False
    # linear weights `tune_layout` stored column by column for decoding (None: not tuned)
    column_weights: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def generation_benchmark(
    models: dict[str, nn.Module],
    *,
    prompt_tokens: int = 128,
    new_tokens: int = 64,
    batch_size: int = 1,
    device: str = "cpu",
    dtype: str = "float32",
    rounds: int = 3,
    progress: bool = False,
    compile: bool = False,
    compile_mode: str | None = None,
    tune: bool = True,
) -> list[GenerationResult]:
    """Prefill and decode speed of causal language models, side by side: each round runs every model
    once (a random prompt of ``prompt_tokens``, then ``new_tokens`` greedy steps with the key-value
    cache).

    ``tune`` stores the linear weights in the order this device multiplies fastest at one decoding
    step's rows (:func:`pela.deploy.memory_layout.tune_layout`). ``compile`` runs prefill and decode
    through ``torch.compile`` with a static key-value cache (shapes fixed, so one graph each; the
    first round, not counted, compiles); ``compile_mode`` ``reduce-overhead`` replays the decoding
    step as a CUDA graph on a GPU."""
    _check_generation(models, prompt_tokens, new_tokens, batch_size, rounds)
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        modes = ", ".join(COMPILE_MODES)
        raise PelaError(f"compile mode must be one of {modes}, got {compile_mode!r}")
    compile = compile or compile_mode is not None
    dev, dt = resolve_device(device), DTYPES.get(dtype)
    if dt is None:
        raise PelaError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    vocab = min(m.config.vocab_size for m in models.values())
    seed = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, vocab, (batch_size, prompt_tokens), generator=seed).to(dev)
    prepared = {name: m.to(dev, dt).eval() for name, m in models.items()}
    columns = {name: _tune(m, batch_size) if tune else None for name, m in prepared.items()}
    total = prompt_tokens + new_tokens
    steps = {name: _Steps(m, compile, compile_mode, total) for name, m in prepared.items()}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    with progress_bar(progress, (rounds + 1) * len(models), "generating") as advance:
        for _ in range(rounds + 1):  # the first round warms up (and compiles) and is not counted
            for name in prepared:
                times[name].append(_prefill_and_decode(steps[name], prompt, new_tokens, dev))
                advance()
    results = []
    for name, model in prepared.items():
        prefill = statistics.median(t[0] for t in times[name][1:])
        decode = statistics.median(t[1] for t in times[name][1:]) / new_tokens
        params = sum(p.numel() for p in model.parameters())
        results.append(GenerationResult(
            name, params, batch_size * prompt_tokens / (prefill / 1e3), batch_size / (decode / 1e3),
            prefill, decode, batch_size, prompt_tokens, new_tokens, str(dev), dtype, compile,
            columns[name],
        ))
    return results


def _check_generation(models: dict[str, nn.Module], prompt_tokens: int, new_tokens: int,
                      batch_size: int, rounds: int) -> None:
    for name, model in models.items():
        if not is_causal_lm(model):
            kind = type(model).__name__
            raise PelaError(f"generation speed needs a causal language model; {name} is a {kind}")
    if min(prompt_tokens, new_tokens, batch_size, rounds) < 1:
        raise PelaError("prompt tokens, new tokens, batch size and rounds must all be >= 1")
    for name, model in models.items():
        what = f"prompt of {prompt_tokens} and {new_tokens} new tokens, in all"
        check_length(name, model, prompt_tokens + new_tokens, what)


class _Steps:
    """One model's forward passes for generation: eager with a cache that grows, or compiled with
    a static cache made once and emptied before each prompt (a new cache object would make
    ``torch.compile`` trace again)."""

    def __init__(self, model: nn.Module, compile: bool, mode: str | None, max_tokens: int):
        self.model, self.cache = model, None
        self.forward = torch.compile(model, mode=mode, dynamic=False) if compile else model
        if compile:
            from transformers import StaticCache

            self.cache = StaticCache(config=model.config, max_cache_len=max_tokens)

    def prefill(self, prompt: torch.Tensor) -> Any:
        if self.cache is None:
            return self.model(input_ids=prompt, use_cache=True)
        self.cache.reset()
        self.position = prompt.shape[1]
        where = torch.arange(self.position, device=prompt.device)
        return self.forward(input_ids=prompt, past_key_values=self.cache, cache_position=where,
                            use_cache=True)

    def decode(self, token: torch.Tensor, past: Any) -> Any:
        if self.cache is None:
            return self.model(input_ids=token, past_key_values=past, use_cache=True)
        where = torch.tensor([self.position], device=token.device)
        self.position += 1
        return self.forward(input_ids=token, past_key_values=self.cache, cache_position=where,
                            use_cache=True)


def _prefill_and_decode(steps: _Steps, prompt: torch.Tensor, new_tokens: int,
                        device: torch.device) -> tuple[float, float]:
    """Milliseconds of the prompt's pass, and of ``new_tokens`` greedy steps after it."""
    _sync(device)
    start = time.perf_counter()
    out = steps.prefill(prompt)
    _sync(device)
    prefill = time.perf_counter() - start
    past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    start = time.perf_counter()
    for _ in range(new_tokens):
        out = steps.decode(token, past)
        past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    _sync(device)
    return prefill * 1e3, (time.perf_counter() - start) * 1e3
