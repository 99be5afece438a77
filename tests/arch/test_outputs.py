"""pela.arch.outputs: calling a model on a batch and reading what it returns."""

import torch
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput

from pela.arch.outputs import block_output, main_output, output_tensors


def test_main_output_prefers_logits_to_hidden_states():
    logits, hidden = torch.randn(2, 3), torch.randn(2, 4, 8)
    assert main_output(SequenceClassifierOutput(logits=logits, hidden_states=(hidden,))) is logits
    assert main_output(BaseModelOutput(last_hidden_state=hidden)) is hidden
    assert main_output((hidden, logits)) is hidden and main_output(logits) is logits


def test_block_output_and_every_tensor_of_an_output():
    h, extra = torch.randn(2, 4, 8), torch.randn(2, 2)
    assert block_output((h, extra)) is h and block_output(BaseModelOutput(last_hidden_state=h)) is h
    found = output_tensors({"a": (h, [extra]), "b": None})
    assert len(found) == 2 and found[0] is h and found[1] is extra
