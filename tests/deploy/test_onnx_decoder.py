"""A causal language model exported as one forward step with its key-value cache: checked against
PyTorch on a decode and a prefill shape, and run greedily by ONNX Runtime, it writes the tokens
PyTorch's generate writes. (Its int8 graph, timed: tests/bench/test_generation_speed.py.)"""

import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_llama

import pela
from pela.deploy.onnx import export_onnx
from pela.deploy.onnx_decoder import OnnxDecoder
from pela.deploy.onnx_runs import cpu_session

pytestmark = pytest.mark.slow  # torch.export and an ONNX Runtime session: seconds each


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=32))


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2"])
def test_a_students_step_exports_with_its_cache_and_generates_what_pytorch_does(tmp_path, make):
    torch.manual_seed(0)
    lm = make().eval()
    pela.compress(lm, pela.LowRankConfig(ratio=2, align=1, speed_check=False))
    record = export_onnx(lm, tmp_path / "lm")
    layers = lm.config.num_hidden_layers
    assert record.inputs[:3] == ["input_ids", "attention_mask", "position_ids"] and len(record.inputs) == 3 + 2 * layers
    assert record.outputs[0] == "logits" and record.outputs[-1] == f"present.{layers - 1}.value"
    assert record.max_abs_difference <= record.tolerance and record.checked_shape == [3, 1]  # a token after a cache
    ops = {n.op_type for n in onnx.load(str(record.path), load_external_data=False).graph.node}
    assert record.opset == 23 and "Attention" in ops  # one operator, not a dozen that copy the cache
    prompt = torch.randint(0, lm.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(1))
    expected = lm.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False,
                           pad_token_id=0)[:, 7:]
    decoder = OnnxDecoder(cpu_session(record.path))
    tokens = [decoder.prefill(prompt.numpy()).argmax(-1)]  # an empty cache, then one token at a time
    for _ in range(5):
        tokens.append(decoder.decode(tokens[-1][:, None]).argmax(-1))
    assert torch.equal(torch.from_numpy(np.stack(tokens, 1)), expected)
