"""pela.models.hf_weights: pela builds the model a checkpoint's weights describe, and says when any are missing."""

import json
import warnings

import pytest
import torch
from conftest import Labelled, stack
from safetensors.torch import load_file, save_file

import pela
from pela.metadata import info


def _sentence_transformers_dir(hf_bert_dir, pooling="cls"):
    """An encoder saved as sentence-transformers saves it: BertModel weights (pooler included) under a config
    that still names the masked-LM model it started from, with modules.json and 1_Pooling/config.json."""
    config = json.loads((hf_bert_dir / "config.json").read_text())
    (hf_bert_dir / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    (hf_bert_dir / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (hf_bert_dir / "1_Pooling").mkdir()
    (hf_bert_dir / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls", "pooling_mode_mean_tokens": pooling == "mean"}))
    return hf_bert_dir


def test_a_config_naming_a_head_the_weights_lack_builds_the_base_model(hf_bert_dir):
    path = _sentence_transformers_dir(hf_bert_dir)
    stored = load_file(path / "model.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing initialized at random, so nothing to say
        model = pela.load(str(path))
    assert type(model).__name__ == "BertModel" and not hasattr(model, "cls")
    assert torch.equal(model.pooler.dense.weight, stored["pooler.dense.weight"])  # the pooler the file holds is kept
    assert info(model).source == {"kind": "hf", "class": "BertModel"} and info(model).pooling == "cls"


def test_the_head_a_checkpoint_holds_is_kept(hf_bert_dir, tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(**json.loads((hf_bert_dir / "config.json").read_text()))).save_pretrained(tmp_path / "mlm")
    assert type(pela.load(str(tmp_path / "mlm"))).__name__ == "BertForMaskedLM"


def test_weights_missing_from_the_file_are_said_in_one_line(hf_bert_dir):
    path = _sentence_transformers_dir(hf_bert_dir)
    stored = load_file(path / "model.safetensors")
    save_file({k: v for k, v in stored.items() if not k.startswith("pooler.")}, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.warns(UserWarning, match=r"has no weights for 2 tensors of BertModel \(pooler.dense.bias, pooler.dense.weight\): "
                                         "they are initialized at random"):
        pela.load(str(path))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_head_pela_adds_pools_as_the_sentence_transformers_model_does(hf_bert_dir, pooling):
    model = pela.load(str(_sentence_transformers_dir(hf_bert_dir, pooling)))
    tuned, _ = pela.finetune(model, Labelled(), pela.FinetuneConfig(steps=1, batch_size=16), collate_fn=stack)
    assert tuned.pooling == pooling
    tuned, _ = pela.finetune(pela.load(str(hf_bert_dir)), Labelled(), pela.FinetuneConfig(steps=1, batch_size=16, pooling="mean"),
                             collate_fn=stack)
    assert tuned.pooling == "mean"  # said outright, it wins
