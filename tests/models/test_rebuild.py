"""Rebuilding a recorded architecture: the classes pela records, and malformed records refused."""

import pytest
import torch
from conftest import hf_bert

from pela.errors import PelaError
from pela.models.rebuild import build_architecture, source_of


def test_a_transformers_model_rebuilds_as_its_class(tmp_path):
    bert = hf_bert()
    bert.config.save_pretrained(tmp_path)
    source = source_of(bert)
    assert source == {"kind": "hf", "class": "BertModel"}
    fresh = build_architecture(source, tmp_path)
    assert type(fresh) is type(bert) and fresh.config.hidden_size == bert.config.hidden_size
    assert {p.dtype for p in fresh.parameters()} == {torch.float32}


def test_a_timm_model_records_its_name_and_rebuilds(tmp_path):
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=3)
    source = source_of(vit)
    assert source["kind"] == "timm"
    fresh = build_architecture(source, tmp_path)
    assert sum(p.numel() for p in fresh.parameters()) == sum(p.numel() for p in vit.parameters())


@pytest.mark.parametrize("source, says", [
    ({"kind": "timm", "name": 3}, "malformed timm source"),
    ({"kind": "hf", "class": "NoSuchModel"}, "unknown transformers model class"),
    ({"kind": "onnx"}, "unknown model source kind 'onnx'"),
])
def test_a_malformed_record_is_refused(tmp_path, source, says):
    hf_bert().config.save_pretrained(tmp_path)
    with pytest.raises(PelaError, match=says):
        build_architecture(source, tmp_path)
