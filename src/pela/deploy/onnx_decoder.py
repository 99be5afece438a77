"""A causal language model as ONNX Runtime serves it: one graph of a forward step with its
key-value cache, which reads a prompt (an empty cache) and writes token by token alike, and the
greedy loop that runs it.

The graph's inputs and outputs carry the names ONNX Runtime's generation tools and optimum use:
``input_ids``, ``attention_mask``, ``position_ids`` and ``past_key_values.N.key`` / ``.value`` in;
``logits`` and ``present.N.key`` / ``.value`` out. Batch, sequence and cache lengths stay dynamic.
A model whose cache is not one key and one value tensor per layer (state-space layers, say)
does not export, and says so.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import nn

from pela.arch import cache_argument, returned_cache
from pela.errors import PelaError

PAST, PRESENT = "past_key_values", "present"
STEP_INPUTS = ("input_ids", "attention_mask", "position_ids")


class DecoderStep(nn.Module):
    """One forward step of a causal language model on plain tensors: the cache in and out as a
    key and a value per layer (ONNX has no cache objects)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # a model that places tokens itself (BLOOM's ALiBi) takes no positions: the graph drops
        # the input
        self.positions = "position_ids" in inspect.signature(model.forward).parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i in range(0, len(past), 2):
            cache.update(past[i], past[i + 1], i // 2)
        where = {"position_ids": position_ids} if self.positions else {}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True,
                         **where, **cache_argument(self.model, cache))
        return (out.logits, *cache_tensors(returned_cache(out)))


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """A key-value cache as its tensors, key then value of each layer."""
    layers = getattr(cache, "layers", None)
    if layers is None or not all(hasattr(x, "keys") and hasattr(x, "values") for x in layers):
        raise PelaError(f"ONNX export needs a cache of one key and one value per layer; this "
                        f"model keeps a {type(cache).__name__}")
    return [t for layer in layers for t in (layer.keys, layer.values)]


def step_names(layers: int) -> tuple[list[str], list[str]]:
    """The graph's input and output names for a model of ``layers`` cached layers."""
    kv = [f"{i}.{part}" for i in range(layers) for part in ("key", "value")]
    return [*STEP_INPUTS, *(f"{PAST}.{x}" for x in kv)], ["logits", *(f"{PRESENT}.{x}" for x in kv)]


@torch.no_grad()
def step_inputs(model: nn.Module, batch_size: int, cached: int,
                new: int) -> dict[str, torch.Tensor]:
    """Inputs of one step: ``new`` random tokens after a cache of ``cached`` (the model's own,
    from a random prompt; empty when 0), by the graph's names."""
    vocab = model.config.vocab_size
    seed = torch.Generator().manual_seed(cached * 1000 + new)
    prompt = torch.randint(0, vocab, (batch_size, max(cached, 1)), generator=seed)
    past = cache_tensors(returned_cache(model(input_ids=prompt, use_cache=True)))
    if not cached:
        past = [t[:, :, :0] for t in past]
    ids = torch.randint(0, vocab, (batch_size, new), generator=seed)
    positions = torch.arange(cached, cached + new).expand(batch_size, new)
    mask = torch.ones(batch_size, cached + new, dtype=torch.long)
    names, _ = step_names(len(past) // 2)
    return dict(zip(names, [ids, mask, positions, *past]))


class OnnxDecoder:
    """Greedy generation through an ONNX Runtime session of a step graph: `prefill` reads a
    prompt, each `decode` one token; both return the last position's logits and keep the cache.
    The cache stays in ONNX Runtime's own tensors (bound to the next step's inputs as they are):
    turned into arrays it would be copied out at every step, a copy that grows with the batch."""

    def __init__(self, session: Any):
        self.session = session
        self.taken = {i.name for i in session.get_inputs()}
        self.past = [i for i in session.get_inputs() if i.name.startswith(PAST + ".")]
        self.outputs = [o.name for o in session.get_outputs()]
        self.cache: dict[str, Any] = {}
        self.length = 0

    def prefill(self, prompt: np.ndarray) -> np.ndarray:
        from onnxruntime import OrtValue

        batch = prompt.shape[0]
        # an empty cache: the graph's fixed sizes (heads, head size) with no positions yet
        self.cache = {i.name: OrtValue.ortvalue_from_numpy(
            np.zeros((batch, i.shape[1], 0, i.shape[3]), np.float32)) for i in self.past}
        self.length = 0
        return self._step(prompt)

    def decode(self, token: np.ndarray) -> np.ndarray:
        return self._step(token)

    def _step(self, ids: np.ndarray) -> np.ndarray:
        batch, new = ids.shape
        start = self.length
        feed = {"input_ids": ids.astype(np.int64),
                "attention_mask": np.ones((batch, start + new), np.int64),
                "position_ids": np.broadcast_to(np.arange(start, start + new), (batch, new)).copy()}
        binding = self.session.io_binding()
        for name, array in feed.items():
            if name in self.taken:
                binding.bind_cpu_input(name, array)
        for name, value in self.cache.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.outputs:
            binding.bind_output(name)  # ONNX Runtime allocates it
        self.session.run_with_iobinding(binding)
        got = dict(zip(self.outputs, binding.get_outputs()))
        self.cache = {i.name: got[PRESENT + i.name[len(PAST):]] for i in self.past}
        self.length = start + new
        return got["logits"].numpy()[:, -1]
