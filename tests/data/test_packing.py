"""pela.data.packing: text as language models train on it, documents joined by the end-of-text token."""

import pytest
import torch
from conftest import TEXTS, tiny_llama, word_tokenizer

from pela import PelaError
from pela.data.collate import Collator
from pela.data.inputs import as_dataset
from pela.data.packing import PackedText, token_stream


def test_packed_text_is_the_stream_cut_into_equal_blocks():
    tok = word_tokenizer()
    data = as_dataset(TEXTS)
    packed = PackedText(data, tok, 16)
    stream = token_stream(TEXTS, tok)
    assert len(packed) == len(stream) // 16 and all(packed[i]["input_ids"].shape == (16,) for i in range(len(packed)))
    assert torch.equal(torch.cat([packed[i]["input_ids"] for i in range(len(packed))]), stream[: len(packed) * 16])
    assert (stream == tok.eos_token_id).sum() == len(TEXTS)  # one end-of-text after every document
    model = tiny_llama()
    model.config.name_or_path = ""
    batch = Collator(model, tokenizer=tok)([packed[0], packed[1]])
    assert batch["input_ids"].shape == (2, 16) and batch["attention_mask"].all()  # no padding anywhere
    with pytest.raises(PelaError, match="fewer than one packed sequence"):
        PackedText(as_dataset(["w1 w2"]), tok, 16)
