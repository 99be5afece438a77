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


def test_a_decoding_step_passes_the_cache_under_the_name_the_model_takes(recwarn):
    from transformers import LlamaConfig, LlamaForCausalLM

    from pela.arch import cache_argument, returned_cache

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32)).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        whole = model(input_ids=ids).logits[:, -1]
        cache = returned_cache(model(input_ids=ids[:, :3], use_cache=True))
        step = model(input_ids=ids[:, 3:], use_cache=True, **cache_argument(model, cache)).logits[:, -1]
    torch.testing.assert_close(step, whole, atol=1e-5, rtol=1e-4)
    assert not [w for w in recwarn if "deprecated" in str(w.message)]


def test_a_prompt_gives_its_last_logits_only_where_the_model_can():
    from transformers import LlamaConfig, LlamaForCausalLM

    from pela.arch import last_logits_argument

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=32)).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        whole = model(input_ids=ids).logits
        last = model(input_ids=ids, **last_logits_argument(model)).logits
    assert last.shape == (1, 1, 50)
    torch.testing.assert_close(last[:, -1], whole[:, -1])
    assert last_logits_argument(lambda input_ids: None) == {}  # a forward without the keyword
