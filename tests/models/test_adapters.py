"""pela.models.adapters: a LoRA adapter merged into its base."""

import json

import pytest
import torch

import pela
from pela import PelaError


def test_lora_adapter_errors(hf_bert_dir, tmp_path):
    """A peft adapter whose base or weights pela cannot use is refused in one line."""
    import peft
    from transformers import BertModel

    adapter = tmp_path / "lora"
    tuned = peft.get_peft_model(BertModel.from_pretrained(hf_bert_dir), peft.LoraConfig(r=2, target_modules=["query"]))
    tuned.peft_config["default"].base_model_name_or_path = str(hf_bert_dir)
    tuned.save_pretrained(adapter)
    assert isinstance(pela.load(str(adapter)), BertModel)  # no task: the base's own class
    with pytest.raises(PelaError, match="random_init does not apply"):
        pela.load(str(adapter), random_init=True)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(PelaError, match="is not a directory"):
        pela.load(str(adapter))
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "someorg/not-cached-base"}))
    with pytest.raises(PelaError, match="could not get someorg/not-cached-base from the Hugging Face hub"):
        pela.load(str(adapter))  # offline, as here: the hub's error in one line
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))
    with pytest.raises(PelaError, match="merges LoRA adapters only"):
        pela.load(str(adapter))
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    state = pela.models.weights.read_weights(str(adapter / "adapter_model.safetensors"), False)
    (adapter / "adapter_model.safetensors").unlink()
    torch.save(state, adapter / "adapter_model.bin")
    with pytest.raises(PelaError, match="only with allow_pickle=true"):
        pela.load(str(adapter))
    assert isinstance(pela.load(str(adapter), allow_pickle=True), BertModel)
    (adapter / "adapter_config.json").write_text("{not json")
    with pytest.raises(PelaError, match="not readable JSON"):
        pela.load(str(adapter))
