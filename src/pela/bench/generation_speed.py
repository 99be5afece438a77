"""How fast a causal language model reads a prompt and writes after it: prefill and decode,
eager or compiled, side by side."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from pela.arch import cache_argument, is_causal_lm, returned_cache
from pela.bench.settings import COMPILE_MODES, DTYPES, check_length, lay_out
from pela.errors import PelaError
from pela.utils.device import resolve_device, synchronize
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
    step's rows (:func:`pela.layers.storage_order.tune_layout`). ``compile`` runs prefill and decode
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
    columns = {name: lay_out(m, batch_size) if tune else None for name, m in prepared.items()}
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
                compile,
                columns[name],
            )
        )
    return results


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
        return self.forward(input_ids=prompt, cache_position=where, use_cache=True,
                            **cache_argument(self.model, self.cache))

    def decode(self, token: torch.Tensor, past: Any) -> Any:
        if self.cache is None:
            return self.model(input_ids=token, use_cache=True, **cache_argument(self.model, past))
        where = torch.tensor([self.position], device=token.device)
        self.position += 1
        return self.forward(input_ids=token, cache_position=where, use_cache=True,
                            **cache_argument(self.model, self.cache))


def _prefill_and_decode(
    steps: _Steps, prompt: torch.Tensor, new_tokens: int, device: torch.device
) -> tuple[float, float]:
    """Milliseconds of the prompt's pass, and of ``new_tokens`` greedy steps after it."""
    synchronize(device)
    start = time.perf_counter()
    out = steps.prefill(prompt)
    synchronize(device)
    prefill = time.perf_counter() - start
    past, token = returned_cache(out), out.logits[:, -1].argmax(-1, keepdim=True)
    start = time.perf_counter()
    for _ in range(new_tokens):
        out = steps.decode(token, past)
        past, token = returned_cache(out), out.logits[:, -1].argmax(-1, keepdim=True)
    synchronize(device)
    return prefill * 1e3, (time.perf_counter() - start) * 1e3
