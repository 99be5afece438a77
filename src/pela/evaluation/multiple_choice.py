"""`multiple_choice`: zero-shot multiple-choice accuracy of a causal language model, by
log-likelihood.

As the LM Evaluation Harness scores such tasks (HellaSwag, ARC, PIQA, ...): each choice is the
continuation of its prompt after one space; its score is the sum of the log-probabilities of its
tokens given the prompt and the tokens of the choice before them. ``accuracy`` picks the highest
sum;
``accuracy_norm`` divides each sum by the choice's length in bytes first (the harness's
``acc_norm``, fairer to long choices). The continuation's tokens are those of ``prompt + " " +
choice`` after the prompt's own, so a tokenizer that merges across the boundary is handled as the
harness handles it. Under ``accelerate launch`` the examples are split across processes and the
counts reduced.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pela.arch import is_causal_lm
from pela.arch.properties import max_positions
from pela.data.choices import ChoiceExample, read_choices
from pela.data.collate import Collator
from pela.data.packing import prefix_ids
from pela.errors import PelaError
from pela.utils.device import model_device
from pela.utils.progress import progress_bar

DELIMITER = " "  # between prompt and choice, as the harness's default target_delimiter


@torch.no_grad()
def multiple_choice(model: nn.Module, data: Any, *, batch_size: int = 8, tokenizer: Any = None,
                    device: str | None = None, progress: bool = False,
                    **fields: str | None) -> dict[str, Any]:
    """Zero-shot accuracy of a causal language model on multiple-choice ``data``.

    Args:
        data: a path, a ``datasets.Dataset``, a list of dicts or of
            `pela.data.choices.ChoiceExample` (fields as `pela.data.choices.read_choices` finds
            them, or ``prompt_field``, ``choices_field``, ``answer_field`` in ``fields``).
        batch_size: prompt-and-choice sequences per forward pass.
        tokenizer: default the one saved with the model.

    Returns:
        ``accuracy``, ``accuracy_norm`` (scores per byte of each choice), ``examples``,
        ``choices`` (scored sequences), ``seconds``.
    """
    if not is_causal_lm(model):
        raise PelaError("multiple-choice scoring needs a causal language model (a …ForCausalLM "
                        f"with its next-token head), got {type(model).__name__}")
    if batch_size < 1:
        raise PelaError(f"batch size must be >= 1, got {batch_size}")
    given = isinstance(data, list) and data and isinstance(data[0], ChoiceExample)
    examples = data if given else read_choices(data, **fields)
    tokenizer = tokenizer or Collator(model).tokenizer
    from accelerate import PartialState

    state = PartialState()
    mine = list(range(state.process_index, len(examples), state.num_processes))
    limit, prefix = max_positions(model), prefix_ids(tokenizer)
    sequences = [(i, c, *_tokens(tokenizer, prefix, examples[i].prompt, choice, limit))
                 for i in mine for c, choice in enumerate(examples[i].choices)]
    dev = torch.device(device) if device else model_device(model)
    began = time.perf_counter()
    scores = _scores(model, sequences, batch_size, dev, progress and state.is_main_process)
    hits = [_right(examples[i], [scores[(i, c)] for c in range(len(examples[i].choices))])
            for i in mine]
    right = torch.tensor([sum(h[0] for h in hits), sum(h[1] for h in hits)], dtype=torch.float64,
                         device=dev)
    if state.num_processes > 1:
        torch.distributed.all_reduce(right)
    return {"accuracy": float(right[0]) / len(examples),
            "accuracy_norm": float(right[1]) / len(examples), "examples": len(examples),
            "choices": sum(len(e.choices) for e in examples),
            "seconds": time.perf_counter() - began}


def _scores(model: nn.Module, sequences: list, batch_size: int, dev: torch.device,
            progress: bool) -> dict[tuple[int, int], float]:
    """Each (example, choice) sequence's log-likelihood of its choice, in batches."""
    scores: dict[tuple[int, int], float] = {}
    groups = [sequences[j:j + batch_size] for j in range(0, len(sequences), batch_size)]
    was_training = model.training
    model.eval()
    try:
        with progress_bar(progress, len(groups), "scoring choices") as advance:
            for group in groups:
                for (i, c, _, _), score in zip(group, _log_likelihoods(model, group, dev)):
                    scores[(i, c)] = score
                advance()
    finally:
        model.train(was_training)
    return scores


def _right(example: ChoiceExample, raw: list[float]) -> tuple[int, int]:
    """Whether the best choice by log-likelihood, and by it per byte of the choice, is the
    answer."""
    norm = [s / max(len(choice.encode()), 1) for s, choice in zip(raw, example.choices)]
    by_raw, by_norm = (max(range(len(v)), key=v.__getitem__) for v in (raw, norm))
    return int(by_raw == example.answer), int(by_norm == example.answer)


def _tokens(tokenizer: Any, prefix: list[int], prompt: str, choice: str,
            limit: int | None) -> tuple[list[int], int]:
    """The ids of ``prefix``, prompt and choice (cut from the left to the model's positions) and how
    many of the last are the choice's."""
    whole = prefix + tokenizer(prompt + DELIMITER + choice, add_special_tokens=False)["input_ids"]
    context = prefix + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    # a merge across the boundary
    shared = len(context) if whole[: len(context)] == context else len(context) - 1
    # the first token has nothing before it: it is never scored
    ending = max(len(whole) - max(shared, 1), 1)
    if limit is not None and len(whole) > limit:
        if ending >= limit:
            raise PelaError(f"a choice of {ending} tokens does not fit the model's {limit} "
                            "positions with any of its prompt")
        whole = whole[-limit:]
    return whole, ending


def _log_likelihoods(model: nn.Module, group: list[tuple[int, int, list[int], int]],
                     dev: torch.device) -> list[float]:
    """Sum of the log-probabilities of each sequence's last ``ending`` tokens, each given those
    before it."""
    length = max(len(ids) for _, _, ids, _ in group)
    ids = torch.zeros(len(group), length, dtype=torch.long)
    mask = torch.zeros(len(group), length, dtype=torch.long)
    for row, (_, _, seq, _) in enumerate(group):
        ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
    logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()
    out = []
    for row, (_, _, seq, ending) in enumerate(group):
        n = len(seq)
        # position t predicts token t + 1
        logp = F.log_softmax(logits[row, n - ending - 1: n - 1], dim=-1)
        target = ids[row, n - ending: n].to(dev)
        out.append(float(logp.gather(-1, target[:, None]).sum()))
    return out
