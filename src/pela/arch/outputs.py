"""Calling a model on a batch, and reading its outputs (prediction, block states, every tensor)."""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch
from torch import nn

from pela.arch.inputs import model_inputs, with_decoder_inputs
from pela.arch.towers import tower_for
from pela.errors import PelaError


def forward(model: nn.Module, inputs: dict[str, torch.Tensor]) -> Any:
    """Call ``model`` on a batch dict: keyword arguments for Hugging Face models, the tensor for
    others.

    A two-tower model given inputs of one kind runs the tower that reads them (see `TowerView` for
    training one under DistributedDataParallel).
    """
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the real model
    try:
        import transformers

        if isinstance(inner, transformers.PreTrainedModel):
            tower = tower_for(inner, inputs) if model is inner else None
            if tower:
                module = inner.get_submodule(tower)
                return module(**model_inputs(module, inputs))
            return call_with_inputs(model, inner, with_decoder_inputs(inner, inputs))
        # a wrapper of a transformers model (a head pela added, `SequenceClassifier`) is called by
        # name too:
        # a lone tensor passed by position may land on another parameter
        if isinstance(getattr(inner, "backbone", None), transformers.PreTrainedModel):
            return model(**inputs)
    except ImportError:
        pass
    if len(inputs) == 1:
        return model(next(iter(inputs.values())))
    return model(**inputs)


def call_with_inputs(
    model: nn.Module, inner: nn.Module, inputs: dict[str, Any], **extra: Any
) -> Any:
    """``model(**inputs, **extra)``, less the inputs ``inner`` does not take (`model_inputs`); a
    model that needs inputs the data does not give (BLIP's image-text matching on images alone, say)
    says which, instead of Python's bare complaint about its ``forward``."""
    inputs = model_inputs(inner, inputs)
    try:
        return model(**inputs, **extra)
    except TypeError as e:
        missing = re.match(
            rf"{type(inner).__name__}\.forward\(\) missing \d+ required (?:positional "
            r"|keyword-only )?"
            r"arguments?: (.+)$",
            str(e),
        )
        if missing is None:
            raise
        raise PelaError(
            f"{type(inner).__name__} needs {missing.group(1)} too, and the data gives only "
            f"{', '.join(inputs)}: it reads inputs of several kinds together"
        ) from None


def main_output(output: Any) -> torch.Tensor:
    """The tensor that stands for a model's prediction: logits if there are any, else hidden
    states."""
    if torch.is_tensor(output):
        return output
    for attr in ("logits", "logits_per_image", "last_hidden_state"):
        value = getattr(output, attr, None)
        if torch.is_tensor(value):
            return value
    if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
        return output[0]
    raise PelaError(f"cannot find a tensor in the model output ({type(output).__name__})")


def block_output(output: Any) -> torch.Tensor:
    """The hidden states a block returns (blocks return a tensor, a tuple, or a ModelOutput)."""
    if torch.is_tensor(output):
        return output
    if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
        return output[0]
    if hasattr(output, "values"):
        return next(v for v in output.values() if torch.is_tensor(v))
    raise PelaError(
        f"cannot read hidden states from a block output of type {type(output).__name__}"
    )


def output_tensors(output: Any) -> list[torch.Tensor]:
    """Every tensor in a model output (a tensor, a tuple/list, or a dict-like ModelOutput),
    nested."""
    if torch.is_tensor(output):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for o in output for t in output_tensors(o)]
    if hasattr(output, "values"):
        return [t for o in output.values() for t in output_tensors(o)]
    return []


def vocabulary_head(model: nn.Module) -> nn.Module | None:
    """A language model's output layer (Hugging Face's ``get_output_embeddings()``), else None.

    It runs last, after every block, and its logits (tokens × vocabulary) are the largest tensor of
    a pass: 1.2 GB for 16 × 401 tokens of a 49k-word vocabulary. Passes that only need what the
    blocks and their layers see (calibration, recording block calls) stop before it.
    """
    get = getattr(model, "get_output_embeddings", None)
    try:
        head = get() if callable(get) else None
    except (NotImplementedError, AttributeError):  # a model class that does not say
        return None
    return head if isinstance(head, nn.Module) else None


def cache_argument(model: nn.Module, cache: Any) -> dict[str, Any]:
    """The keyword that passes a causal language model its key-value cache: ``cache`` where its
    forward takes that (transformers 5, where the old name warns), else ``past_key_values``."""
    return {"cache" if "cache" in _forward_takes(model) else "past_key_values": cache}


def last_logits_argument(model: nn.Module) -> dict[str, Any]:
    """The keyword that has a causal language model compute logits for the last position only
    (``logits_to_keep=1``), where its forward takes it: what generating needs after a prompt,
    without a vocabulary-wide product for every token of it (as `generate` itself does)."""
    return {"logits_to_keep": 1} if "logits_to_keep" in _forward_takes(model) else {}


def _forward_takes(model: nn.Module) -> Any:
    """The parameters a model's forward (or a plain callable) names."""
    return inspect.signature(getattr(model, "forward", model)).parameters


def returned_cache(output: Any) -> Any:
    """The key-value cache a causal language model's output holds, under either name."""
    return output["cache"] if "cache" in output else output.past_key_values
