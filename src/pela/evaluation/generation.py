"""Greedy continuations of the same prompts by the student and its teacher, side by side.

A perplexity is one number; reading what a compressed language model writes shows what the number
hides (repetition, lost facts, broken grammar). `pela distill` writes ``generations.md`` into its
run directory when it distills a causal language model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pela.arch import model_inputs
from pela.utils.device import model_device
from pela.utils.files import atomic_write_text
from pela.utils.processes import partial_state


@torch.no_grad()
def side_by_side(student: nn.Module, teacher: nn.Module, prompts: list[str], tokenizer: Any,
                 max_new_tokens: int = 32) -> list[dict[str, str]]:
    """``{"prompt", "teacher", "student"}`` for each prompt: each model's greedy continuation (new
    text only)."""
    rows = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")
        row = {"prompt": prompt}
        for name, model in (("teacher", teacher), ("student", student)):
            device = model_device(model)
            was_training = model.training
            model.eval()
            try:
                # generate refuses extra inputs
                inputs = {k: v.to(device) for k, v in model_inputs(model, ids).items()}
                out = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id
                    if tokenizer.pad_token_id is not None
                    else tokenizer.eos_token_id,
                )
            finally:
                model.train(was_training)
            row[name] = tokenizer.decode(
                out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True
            )
        rows.append(row)
    return rows


def as_markdown(rows: list[dict[str, str]]) -> str:
    lines = ["# Greedy continuations: teacher and student", ""]
    for i, row in enumerate(rows, 1):
        lines += [
            f"## {i}. {row['prompt']}",
            "",
            f"- **teacher**: {row['teacher']}",
            f"- **student**: {row['student']}",
            "",
        ]
    return "\n".join(lines)


def prompts_from(data: Any, count: int = 3, words: int = 12) -> list[str]:
    """The openings (first ``words`` words) of the first ``count`` documents of ``data`` that have
    that many."""
    out = []
    for i in range(len(data)):
        text = data[i].get("text") if isinstance(data[i], dict) else None
        if isinstance(text, str) and len(text.split()) > words:
            out.append(" ".join(text.split()[:words]))
            if len(out) == count:
                break
    return out


def write_generations(
    path: Any, student: nn.Module, teacher: nn.Module, data: Any, tokenizer: Any
) -> None:
    """``generations.md`` at ``path``: both models' greedy continuations of the openings of
    ``data``.

    Every process calls it (models sharded by FSDP generate only on all processes at once); the main
    one writes."""
    text = as_markdown(side_by_side(student, teacher, prompts_from(data), tokenizer))
    if partial_state().is_main_process:
        atomic_write_text(path, text)
