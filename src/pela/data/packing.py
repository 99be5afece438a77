"""Text as a language model is trained on it: documents tokenized, joined, and cut into equal
blocks.

As Hugging Face's language-modelling examples do (``group_texts``): each document's tokens are
followed by the tokenizer's end-of-text token (the beginning-of-text token opens the stream where
the tokenizer adds one), the stream is cut into blocks of ``length`` tokens, and the last partial
block is dropped. Blocks hold no padding, so every position is a real token for every loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from pela.errors import PelaError

CHUNK = 1024  # documents per tokenizer call: a fast tokenizer encodes a list in parallel


def prefix_ids(tokenizer: Any) -> list[int]:
    """What the tokenizer puts before any text: ``[bos]`` for Llama-style tokenizers, nothing for
    GPT-2's."""
    return tokenizer("", add_special_tokens=True)["input_ids"]


def token_stream(texts: list[str], tokenizer: Any) -> torch.Tensor:
    """The documents as one 1-D tensor of token ids: ``[bos] doc₁ eos doc₂ eos …``."""
    prefix = prefix_ids(tokenizer)
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    parts = [torch.tensor(prefix, dtype=torch.long)]
    for start in range(0, len(texts), CHUNK):
        encoded = tokenizer(texts[start:start + CHUNK], add_special_tokens=False)["input_ids"]
        parts.append(torch.tensor([t for ids in encoded for t in (*ids, *eos)], dtype=torch.long))
    return torch.cat(parts)


def texts_of(data: Any, what: str) -> list[str]:
    """The ``text`` field of every record of ``data``; ``what`` names the caller in the error."""
    texts = [data[i]["text"] for i in range(len(data))] if len(data) and "text" in data[0] else None
    if not texts:
        raise PelaError(f"{what} needs text: the data is empty or has no text field")
    return texts


class PackedText(Dataset):
    """Blocks of ``length`` token ids cut from the documents of ``data`` (records with a ``text``
    field)."""

    def __init__(self, data: Any, tokenizer: Any, length: int):
        if length < 2:
            raise PelaError(f"packed sequences need at least 2 tokens, got {length}")
        stream = token_stream(texts_of(data, "packing"), tokenizer)
        blocks = len(stream) // length
        if blocks == 0:
            raise PelaError(
                f"the text holds {len(stream)} tokens, fewer than one packed sequence of {length}"
            )
        # half the memory; every vocabulary fits
        self.ids = stream[: blocks * length].view(blocks, length).to(torch.int32)
        self.length = length

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i].long()}
