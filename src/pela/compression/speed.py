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
carries both times.
"""

from __future__ import annotations

import torch
from torch import nn

from pela.arch import is_causal_lm
from pela.arch.inputs import DEFAULT_BATCH, DEFAULT_SEQ_LEN, example_inputs, linear_rows
from pela.arch.properties import max_positions
from pela.compression.report import LayerReport
from pela.utils.products import factored_ms
from pela.utils.progress import progress_bar


def serving_rows(model: nn.Module) -> int:
    """The rows a product multiplies where ``model`` is served by default: one new token at a time
    for a causal language model, else a batch of `DEFAULT_BATCH` examples' tokens."""
    if is_causal_lm(model):
        return 1
    length = min(DEFAULT_SEQ_LEN, max_positions(model) or DEFAULT_SEQ_LEN)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    inputs = example_inputs(model, 1, length, device)
    args, kwargs = (inputs, {}) if isinstance(inputs, tuple) else ((), inputs)
    return DEFAULT_BATCH * linear_rows(model, args, kwargs)


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

