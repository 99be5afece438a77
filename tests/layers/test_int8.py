"""pela.layers.int8: torchao's int8 on every linear layer, factors included; saved and loaded
bitwise, never unpickled."""

import json

import pytest
import torch
from conftest import hf_bert, tiny_llama
from torch import nn

import pela
from pela import PelaError
from pela.layers.int8 import int8_mode, quantize_int8


def _student(make):
    torch.manual_seed(0)
    model = make().eval()
    pela.compress(model, pela.LowRankConfig(ratio=2, align=1))
    return model


@pytest.mark.parametrize("mode", ["dynamic", "weight"])
def test_every_factor_gets_int8_weights_and_the_outputs_stay_close(mode):
    model = _student(hf_bert)
    x = torch.randint(0, 100, (2, 8))
    with torch.no_grad():
        before = model(x).last_hidden_state
        assert quantize_int8(model, mode) is model and int8_mode(model) == mode
        after = model(x).last_hidden_state
    factors = [m for m in model.modules() if isinstance(m, pela.LowRankLinear)]
    assert factors and all(type(f.a.weight) is not torch.nn.Parameter for f in factors)
    assert all(getattr(f.a.weight, "qdata", None) is not None for f in factors)
    assert all(f.a.weight.qdata.dtype == torch.int8 for f in factors)
    gap = float((after - before).norm() / before.norm())
    assert 0 < gap < 0.05  # int8 moves the outputs a little, never nothing


def test_what_cannot_be_quantized_is_refused():
    model = _student(hf_bert)
    with pytest.raises(PelaError, match="int8 mode must be one of dynamic, weight"):
        quantize_int8(model, "int4")
    quantize_int8(model)
    with pytest.raises(PelaError, match="quantized already"):
        quantize_int8(model)
    with pytest.raises(PelaError, match="no linear layer"):
        quantize_int8(nn.Sequential(nn.ReLU()))
    with pytest.raises(PelaError, match="pack it before quantizing"):
        pela.pack(model)
    with pytest.raises(PelaError, match="tune the layout of the float model"):
        pela.tune_layout(model)
    packed = _student(hf_bert)
    pela.pack(packed)
    with pytest.raises(PelaError, match="quantize the model before packing"):
        quantize_int8(packed)


def wide_bert():
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(vocab_size=100, hidden_size=256, num_hidden_layers=1,
                                num_attention_heads=4, intermediate_size=1024,
                                max_position_embeddings=16)).eval()


# tiny_llama ties its head to its embedding; a wide BERT's weights are mostly its linear layers'
@pytest.mark.parametrize("make", [tiny_llama, wide_bert])
def test_a_saved_int8_model_loads_bitwise_and_is_smaller(tmp_path, make):
    torch.manual_seed(0)
    make().save_pretrained(tmp_path / "dense")
    model = pela.load(tmp_path / "dense")  # it records the architecture pela.load rebuilds
    pela.compress(model, pela.LowRankConfig(ratio=2, align=1))
    pela.save_pretrained(model, tmp_path / "fp32")
    quantize_int8(model)
    pela.save_pretrained(model, tmp_path / "int8")
    assert json.loads((tmp_path / "int8" / "pela.json").read_text())["int8"] == "dynamic"
    loaded = pela.load(tmp_path / "int8")
    assert int8_mode(loaded) == "dynamic"
    x = torch.randint(0, 90, (2, 8))
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])
    size = lambda d: (tmp_path / d / "model.safetensors").stat().st_size  # noqa: E731
    if make is wide_bert:
        assert size("int8") < 0.4 * size("fp32")
    with pytest.raises(PelaError, match="saved as it is"):
        pela.save_pretrained(model, tmp_path / "half", dtype="bfloat16")


def test_an_int8_weight_takes_its_bytes_not_its_float_size():
    from pela.layers.int8 import stored_bytes

    model = quantize_int8(nn.Sequential(nn.Linear(64, 32)))
    weight = model[0].weight
    assert stored_bytes(weight) == 32 * 64 + 32 * 4 + 32  # int8 data, a float32 scale and an int8 zero point per row
    assert stored_bytes(torch.zeros(3, 4)) == 48
