"""Never slower than the original: a layer whose factors this device would not multiply faster
than its dense weight stays dense (under a parameter budget, its parameters go to the other layers:
`pela.compression.budget`).

Factorizing trades one product for two thinner ones. With fewer parameters the two usually take
less time, but not always: one token at a time, a small layer's second call costs more than the
bytes it saves; on a GPU, a rank its kernels tile badly can lose to the dense shape. So before the
factors are swapped in, each layer's dense product and its two factors' are timed at the rows the
model will serve (`pela.utils.products.factored_ms`: in turns, once per device, cached; each
matrix in its faster storage order, as `pela.tune_layout` will lay it out), and a layer whose
factors are not faster stays dense, its report row saying so. Every factorized layer's row
carries both times. `model_ms` times the whole model where it is served, for a speed the user
names (`pela.compression.speed_target`).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

from pela.arch import cache_argument, is_causal_lm, returned_cache
from pela.arch.inputs import DEFAULT_BATCH, DEFAULT_SEQ_LEN, example_inputs, linear_rows
from pela.arch.properties import max_positions
from pela.compression.report import LayerReport
from pela.utils.device import model_device, synchronize
from pela.utils.products import factored_ms
from pela.utils.progress import progress_bar

MAX_TIMES = 50  # forward passes `model_ms` times at most


def serving_rows(model: nn.Module) -> int:
    """The rows a product multiplies where ``model`` is served by default: one new token at a time
    for a causal language model, else a batch of `DEFAULT_BATCH` examples' tokens."""
    if is_causal_lm(model):
        return 1
    return DEFAULT_BATCH * _example_rows(model)


@torch.no_grad()
def model_ms(model: nn.Module, rows: int, min_seconds: float = 0.2, runs: int = 3,
             warm: bool = True) -> float:
    """Milliseconds of one forward pass of ``model`` (in eval mode) where it is served, with
    ``rows`` rows a product: for a causal language model, one decoding step of ``rows`` sequences
    after a prompt of the default length (key-value cache and all); else a batch of random
    examples of about ``rows`` tokens. The median of at least ``runs`` (more until they take
    ``min_seconds``), after one to warm up if ``warm``."""
    device, was_training = model_device(model), model.training
    model.eval()
    try:
        run = _decoding_step(model, rows) if is_causal_lm(model) else _batch_pass(model, rows)
        if warm:
            run()
        times: list[float] = []
        while len(times) < runs or sum(times) < min_seconds * 1e3 and len(times) < MAX_TIMES:
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)
    finally:
        model.train(was_training)


def _batch_pass(model: nn.Module, rows: int) -> Callable[[], Any]:
    batch = max(1, round(rows / _example_rows(model)))
    args, kwargs = _split(example_inputs(model, batch, _length(model), model_device(model)))
    return lambda: model(*args, **kwargs)


def _decoding_step(model: nn.Module, rows: int) -> Callable[[], Any]:
    """One new token for each of ``rows`` prompts at a time, the cache growing as it would."""
    # half the default length, leaving room in the positions for every step timed (`MAX_TIMES`)
    prompt = max(1, min(_length(model) // 2, _length(model) - MAX_TIMES - 2))
    ids = example_inputs(model, rows, prompt, model_device(model))["input_ids"]
    state = {"cache": returned_cache(model(input_ids=ids, use_cache=True))}
    token = ids[:, -1:]

    def step() -> None:
        out = model(input_ids=token, use_cache=True, **cache_argument(model, state["cache"]))
        state["cache"] = returned_cache(out)
    return step


def _example_rows(model: nn.Module) -> int:
    """The rows one example of the default length gives each product."""
    one = example_inputs(model, 1, _length(model), model_device(model))
    return linear_rows(model, *_split(one))


def _length(model: nn.Module) -> int:
    return min(DEFAULT_SEQ_LEN, max_positions(model) or DEFAULT_SEQ_LEN)


def _split(inputs: tuple | dict) -> tuple[tuple, dict]:
    return (inputs, {}) if isinstance(inputs, tuple) else ((), inputs)


def layer_ms(
    out_features: int, in_features: int, rank: int, rows: int, weight: torch.Tensor
) -> tuple[float, float]:
    """Milliseconds of one product of the layer at ``rows`` rows, dense and as two factors at
    ``rank`` (each stored in the order it runs faster, timed in turns)."""
    shape = (out_features, in_features)
    return factored_ms(shape, rank, rows, weight.dtype, weight.device)


def time_layers(rows: list[LayerReport], weights: dict[str, torch.Tensor], serve_rows: int,
                progress: bool = False) -> None:
    """Fill in each factorized row's ``ms_dense`` and ``ms_factored`` at ``serve_rows`` rows."""
    todo = [r for r in rows if r.rank is not None]
    with progress_bar(progress, len(todo), "timing products") as advance:
        for r in todo:
            time_row(r, r.rank, serve_rows, weights[r.name])
            advance(info=r.name)


def time_row(row: LayerReport, rank: int, serve_rows: int, weight: torch.Tensor) -> None:
    """Fill in the row's ``ms_dense`` and ``ms_factored``: its shape's products at ``serve_rows``
    rows, dense and as two factors at ``rank``."""
    row.ms_dense, row.ms_factored = layer_ms(row.out_features, row.in_features, rank, serve_rows,
                                             weight)
    row.serve_rows = serve_rows


def slower(row: LayerReport) -> bool:
    """Whether the row's factors were timed no faster than its dense weight."""
    return row.ms_factored is not None and row.ms_factored >= row.ms_dense


def keep_dense(row: LayerReport) -> None:
    """Turn a factorized row back into a dense one, saying why."""
    row.reason = (f"its factors are no faster here ({row.ms_factored:.3f} vs {row.ms_dense:.3f} ms "
                  f"dense at {row.serve_rows} rows)")
    row.rank, row.rel_error, row.status = None, None, "dense"
    row.params_after = row.params_before


def respent(row: LayerReport, rank: int) -> None:
    """Say why a row stays dense under a parameter budget: its factors at ``rank`` were timed no
    faster, and the parameters it keeps were taken from the other layers."""
    row.reason = (f"its factors at rank {rank} are no faster here ({row.ms_factored:.3f} vs "
                  f"{row.ms_dense:.3f} ms dense at {row.serve_rows} rows): the budget went to the "
                  "other layers")
