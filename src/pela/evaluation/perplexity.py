"""`perplexity`: how well a causal language model predicts held-out text, token by token.

The documents are tokenized and joined into one stream, each followed by the tokenizer's end-of-text
token (with the beginning-of-text token first, where the tokenizer adds one), as Hugging Face's
language-modelling examples pack text. Windows of ``context`` tokens start every ``stride`` tokens;
each window scores only the tokens no earlier window scored, each from up to ``context − 1``
tokens before it (the sliding-window method of the transformers docs). ``stride = context``, the
default, gives non-overlapping windows, as SVD-LLM and most compression papers report: the first
token of each window then has nothing before it and is not scored; a smaller stride scores every
token after the first, with more context, at ``context / stride`` times the work. Under ``accelerate
launch`` the windows are split across processes and the sums reduced, so the result does not depend
on how many processes run.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pela.arch.properties import is_causal_lm, max_positions
from pela.data.collate import Collator
from pela.data.inputs import as_dataset
from pela.data.packing import texts_of, token_stream
from pela.errors import PelaError
from pela.utils.device import model_device
from pela.utils.progress import progress_bar
from pela.utils.sharded import holds_shards


def windows(n_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, scored)`` for each window: tokens ``[begin, end)`` are fed, the last
    ``scored`` predicted (those no earlier window predicted and with at least one token before them
    in this one)."""
    out, scored_to, begin = [], 1, 0  # token 0 has nothing before it to be predicted from
    while True:
        end = min(begin + context, n_tokens)
        first = max(scored_to, begin + 1)
        if end > first:
            out.append((begin, end, end - first))
        scored_to = max(scored_to, end)
        if end >= n_tokens:
            return out
        begin += stride


@torch.no_grad()
def perplexity(
    model: nn.Module,
    data: Any,
    *,
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = 1,
    tokenizer: Any = None,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Token-level perplexity of a causal language model on ``data`` (texts, or records with a text
    field).

    Args:
        context: tokens per window; default the model's maximum positions.
        stride: tokens between window starts, at most ``context``; default ``context`` (no overlap).
        batch_size: windows per forward pass (the logits of one window take ``context × vocabulary``
            floats).
        tokenizer: default the one saved with the model.

    Returns:
        ``perplexity``, ``nll`` (mean negative log-likelihood per token, nats), ``tokens``
        (predicted),
        ``windows``, ``context``, ``stride``, ``seconds`` and ``tokens_per_s``.
    """
    if not is_causal_lm(model):
        raise PelaError(
            f"perplexity needs a causal language model (a …ForCausalLM with its next-token head), "
            f"got {type(model).__name__}"
        )
    limit = max_positions(model)
    context = limit if context is None else context
    if context is None:
        raise PelaError(
            "this model does not say how many positions it takes: give the context length "
            "(context=N)"
        )
    if context < 2 or (limit is not None and context > limit):
        raise PelaError(
            f"context must be between 2 and the model's {limit} positions, got {context}"
        )
    stride = context if stride is None else stride
    if not 1 <= stride <= context:
        raise PelaError(f"stride must be between 1 and the context ({context}), got {stride}")
    if batch_size < 1:
        raise PelaError(f"batch size must be >= 1, got {batch_size}")
    data = as_dataset(data)
    stream = token_stream(texts_of(data, "perplexity"), tokenizer or Collator(model).tokenizer)
    if len(stream) < 2:
        raise PelaError("the text holds fewer than 2 tokens: nothing to predict")
    return _score(
        model,
        stream,
        windows(len(stream), context, stride),
        context,
        stride,
        batch_size,
        device,
        progress,
    )


def _score(
    model: nn.Module,
    stream: torch.Tensor,
    spans: list[tuple[int, int, int]],
    context: int,
    stride: int,
    batch_size: int,
    device: str | None,
    progress: bool,
) -> dict[str, Any]:
    from accelerate import PartialState

    state = PartialState()
    # the windows are split over the processes, unless FSDP shards the model: then every process
    # must run
    # every forward pass (each gathers the weights from all), so each scores all windows
    split = state.num_processes > 1 and not holds_shards(model)
    mine = spans[state.process_index :: state.num_processes] if split else spans
    dev = torch.device(device) if device else model_device(model)
    was_training = model.training
    model.eval()
    nll, count = (
        torch.zeros((), dtype=torch.float64, device=dev),
        torch.zeros((), dtype=torch.float64, device=dev),
    )
    began = time.perf_counter()
    groups = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    try:
        with progress_bar(progress and state.is_main_process, len(groups), "perplexity") as advance:
            for group in groups:
                length = max(end - begin for begin, end, _ in group)
                ids = torch.zeros(len(group), length, dtype=torch.long)
                mask = torch.zeros(len(group), length, dtype=torch.long)
                labels = torch.full((len(group), length), -100, dtype=torch.long)
                for row, (begin, end, scored) in enumerate(group):
                    ids[row, : end - begin], mask[row, : end - begin] = stream[begin:end], 1
                    labels[row, end - begin - scored : end - begin] = stream[end - scored : end]
                logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
                targets = labels[:, 1:].to(dev)  # position i predicts token i + 1
                nll += F.cross_entropy(
                    logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                    targets.reshape(-1),
                    ignore_index=-100,
                    reduction="sum",
                ).double()
                count += (targets != -100).sum()
                advance()
    finally:
        model.train(was_training)
    if split:
        torch.distributed.all_reduce(nll)
        torch.distributed.all_reduce(count)
    seconds = time.perf_counter() - began
    mean = float(nll / count)
    return {
        "perplexity": math.exp(mean),
        "nll": mean,
        "tokens": int(count),
        "windows": len(spans),
        "context": context,
        "stride": stride,
        "seconds": seconds,
        "tokens_per_s": int(count) / seconds if seconds > 0 else None,
    }
