"""pela.metadata: one record per model of where it came from, its files and its classes."""

from conftest import hf_bert
from torch import nn

import pela
from pela.arch.heads import with_classifier
from pela.metadata import ModelInfo, info


def test_one_record_attached_on_first_use():
    model = nn.Linear(2, 2)
    record = info(model)
    assert record == ModelInfo() and info(model) is record
    record.classes = ["a", "b"]
    assert info(model).classes == ["a", "b"]
    assert info(None) == ModelInfo() and info(None) is not info(None)  # nothing to attach to


def test_loaded_models_record_their_source_and_a_head_keeps_the_files(hf_bert_dir, tmp_path):
    model = pela.load(str(hf_bert_dir))
    assert info(model).source == {"kind": "hf", "class": "BertModel"} and info(model).files == str(hf_bert_dir)
    wrapped = with_classifier(model, 3)
    assert info(wrapped).files == str(hf_bert_dir) and info(wrapped.backbone).source["class"] == "BertModel"
    info(wrapped).classes = ["x", "y", "z"]
    pela.save_pretrained(wrapped, tmp_path / "m")
    assert info(pela.load(tmp_path / "m")).classes == ["x", "y", "z"]
    assert info(hf_bert()).source is None  # built outside pela: nothing recorded
