"""How fast a causal language model reads a prompt and writes after it: prefill and decode,
eager or compiled, in PyTorch and (``onnx``) in ONNX Runtime, side by side."""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pela.arch import cache_argument, is_causal_lm, last_logits_argument, returned_cache
from pela.bench.settings import COMPILE_MODES, DTYPES, check_length, compile_step, lay_out
from pela.deploy.onnx_decoder import OnnxDecoder
from pela.deploy.onnx_runs import decoder_runs
from pela.errors import PelaError
from pela.utils.device import model_device, resolve_device, synchronize
from pela.utils.progress import progress_bar


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
    runtime: str = "pytorch"  # or "onnxruntime", "onnxruntime int8" (`pela.deploy.onnx_runs`)

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
    onnx: bool = False,
) -> list[GenerationResult]:
    """Prefill and decode speed of causal language models, side by side: each round runs every model
    once (a random prompt of ``prompt_tokens``, then ``new_tokens`` greedy steps with the key-value
    cache).

    ``tune`` stores the linear weights in the order this device multiplies fastest at one decoding
    step's rows (:func:`pela.layers.storage_order.tune_layout`). ``compile`` runs prefill and decode
    through ``torch.compile`` with a static key-value cache (shapes fixed, so one graph each; the
    first round, not counted, compiles; on a CPU its kernels called from C++,
    :func:`pela.bench.settings.compile_step`); ``compile_mode`` ``reduce-overhead`` replays the
    decoding step as a CUDA graph on a GPU. ``onnx`` also runs each model in ONNX Runtime, float32
    and int8 (its step graph, `pela.deploy.onnx_decoder`: checked against PyTorch when exported;
    CPU, float32 models), each a result of its own (``runtime``)."""
    _check_generation(models, prompt_tokens, new_tokens, batch_size, rounds)
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        modes = ", ".join(COMPILE_MODES)
        raise PelaError(f"compile mode must be one of {modes}, got {compile_mode!r}")
    compile = compile or compile_mode is not None
    dev, dt = resolve_device(device), DTYPES.get(dtype)
    if dt is None:
        raise PelaError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if onnx and (dtype != "float32" or dev.type != "cpu"):
        raise PelaError("ONNX Runtime is timed on the CPU in float32 "
                        "(--device cpu --dtype float32)")
    vocab = min(m.config.vocab_size for m in models.values())
    seed = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, vocab, (batch_size, prompt_tokens), generator=seed).to(dev)
    prepared = {name: m.to(dev, dt).eval() for name, m in models.items()}
    columns = {name: lay_out(m, batch_size) if tune else None for name, m in prepared.items()}
    total = prompt_tokens + new_tokens
    steps: dict[tuple[str, str], Any] = {
        (name, "pytorch"): GreedySteps(m, compile, compile_mode, total)
        for name, m in prepared.items()}
    with tempfile.TemporaryDirectory(prefix="pela-bench-") as work:
        if onnx:
            for i, (name, m) in enumerate(prepared.items()):
                for runtime, decoder, _ in decoder_runs(m, Path(work) / f"model-{i}"):
                    steps[(name, runtime)] = _OnnxSteps(decoder)
        times = _rounds(steps, prompt, new_tokens, rounds, dev, progress)
    results = []
    for (name, runtime), taken in times.items():
        prefill = statistics.median(t[0] for t in taken[1:])
        decode = statistics.median(t[1] for t in taken[1:]) / new_tokens
        params = sum(p.numel() for p in prepared[name].parameters())
        pytorch = runtime == "pytorch"
        results.append(
            GenerationResult(
                name,
                params,
                batch_size * prompt_tokens / (prefill / 1e3),
                batch_size / (decode / 1e3),
                prefill,
                decode,
                batch_size,
                prompt_tokens,
                new_tokens,
                str(dev),
                dtype,
                compile and pytorch,
                columns[name] if pytorch else None,
                runtime,
            )
        )
    return results


def _rounds(steps: dict[tuple[str, str], Any], prompt: torch.Tensor, new_tokens: int,
            rounds: int, dev: torch.device, progress: bool) -> dict[tuple[str, str], list]:
    """Each round runs every model in every runtime once, in turn; the first warms up (and
    compiles) and is kept apart by the caller."""
    times: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in steps}
    with progress_bar(progress, (rounds + 1) * len(steps), "generating") as advance:
        for _ in range(rounds + 1):
            for key, step in steps.items():
                times[key].append(_prefill_and_decode(step, prompt, new_tokens, dev))
                advance()
    return times


def _check_generation(
    models: dict[str, nn.Module], prompt_tokens: int, new_tokens: int, batch_size: int, rounds: int
) -> None:
    for name, model in models.items():
        if not is_causal_lm(model):
            kind = type(model).__name__
            raise PelaError(f"generation speed needs a causal language model; {name} is a {kind}")
    if min(prompt_tokens, new_tokens, batch_size, rounds) < 1:
        raise PelaError("prompt tokens, new tokens, batch size and rounds must all be >= 1")
    for name, model in models.items():
        what = f"prompt of {prompt_tokens} and {new_tokens} new tokens, in all"
        check_length(name, model, prompt_tokens + new_tokens, what)


class GreedySteps:
    """One model's greedy steps in PyTorch: eager with a cache that grows, or compiled with a
    static cache made once and emptied before each prompt (a new cache object would make
    ``torch.compile`` trace again). Each step returns the next token and keeps the cache."""

    def __init__(self, model: nn.Module, compile: bool, mode: str | None, max_tokens: int):
        self.model, self.cache, self.past = model, None, None
        self.last = last_logits_argument(model)  # the prompt's last logits only, as `generate`
        self.forward = compile_step(model, mode, model_device(model)) if compile else model
        if compile:
            from transformers import StaticCache

            self.cache = StaticCache(config=model.config, max_cache_len=max_tokens)

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            return self._next(self.model(input_ids=prompt, use_cache=True, **self.last))
        self.cache.reset()
        self.position = prompt.shape[1]
        where = torch.arange(self.position, device=prompt.device)
        return self._next(self.forward(input_ids=prompt, cache_position=where, use_cache=True,
                                       **self.last, **cache_argument(self.model, self.cache)))

    def decode(self, token: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            return self._next(self.model(input_ids=token, use_cache=True,
                                         **cache_argument(self.model, self.past)))
        where = torch.tensor([self.position], device=token.device)
        self.position += 1
        return self._next(self.forward(input_ids=token, cache_position=where, use_cache=True,
                                       **cache_argument(self.model, self.cache)))

    def _next(self, out: Any) -> torch.Tensor:
        self.past = returned_cache(out)
        return out.logits[:, -1].argmax(-1, keepdim=True)


class _OnnxSteps:
    """One model's greedy steps in ONNX Runtime (`OnnxDecoder`), on the same prompt."""

    def __init__(self, decoder: OnnxDecoder):
        self.decoder = decoder

    def prefill(self, prompt: torch.Tensor) -> Any:
        return self.decoder.prefill(prompt.cpu().numpy()).argmax(-1)[:, None]

    def decode(self, token: Any) -> Any:
        return self.decoder.decode(token).argmax(-1)[:, None]


def _prefill_and_decode(
    steps: GreedySteps | _OnnxSteps, prompt: torch.Tensor, new_tokens: int, device: torch.device
) -> tuple[float, float]:
    """Milliseconds of the prompt's pass, and of ``new_tokens`` greedy steps after it."""
    synchronize(device)
    start = time.perf_counter()
    token = steps.prefill(prompt)
    synchronize(device)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(new_tokens):
        token = steps.decode(token)
    synchronize(device)
    return prefill * 1e3, (time.perf_counter() - start) * 1e3
