"""pela.arch.inputs: which inputs a model takes, and what it reads."""

import torch
from conftest import hf_bert, hf_clip, hf_vit, timm_vit, tiny_llama

from pela.arch.classifier import SequenceClassifier
from pela.arch.inputs import accepted_inputs, input_kinds, model_inputs


def test_a_model_gets_only_the_inputs_its_forward_names():
    llama, bert = tiny_llama(), hf_bert()
    batch = {"input_ids": torch.ones(1, 3, dtype=torch.long), "token_type_ids": torch.zeros(1, 3, dtype=torch.long),
             "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    assert set(model_inputs(llama, batch)) == {"input_ids", "attention_mask"}  # Llama's **kwargs take no token types
    assert set(model_inputs(bert, batch)) == set(batch)
    assert set(model_inputs(SequenceClassifier(llama, 32, 2), batch)) == {"input_ids", "attention_mask"}
    assert accepted_inputs(timm_vit()) is None  # called with its one tensor by position: nothing to filter


def test_what_a_model_reads():
    assert input_kinds(timm_vit()) == {"image"} and input_kinds(hf_vit()) == {"image"}
    assert input_kinds(hf_bert()) == {"text"} and input_kinds(tiny_llama()) == {"text"}
    assert input_kinds(hf_clip()) == {"text", "image"}
    assert input_kinds(SequenceClassifier(hf_clip(), 32, 2, tower="vision_model")) == {"image"}
    assert input_kinds(torch.nn.Linear(2, 2)) == set()  # unknown: nothing is refused
