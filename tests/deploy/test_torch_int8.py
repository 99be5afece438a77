"""pela.deploy.torch_int8: a model's int8 copy saved, with how far its outputs moved."""

import torch
from conftest import hf_bert

import pela
from pela.deploy.torch_int8 import save_int8
from pela.layers.int8 import int8_mode


def test_the_int8_copy_is_saved_with_its_distance_from_the_float_model(tmp_path):
    torch.manual_seed(0)
    hf_bert().save_pretrained(tmp_path / "dense")
    model = pela.load(tmp_path / "dense")
    record = save_int8(model, tmp_path / "int8", "weight")
    assert int8_mode(model) == "weight" and int8_mode(pela.load(record.path)) == "weight"
    assert 0 < record.relative_error < 0.05 and 0 < record.max_abs_difference
    assert record.weights_bytes == (tmp_path / "int8" / "model.safetensors").stat().st_size
