import pytest
import torch
from safetensors.torch import save_file

import pela
from pela import PelaError

from conftest import TIMM_VIT


@pytest.mark.parametrize("source, fragment", [
    ("nonexistent_thing", "unknown model source"),
    ("someorg/somemodel", "write hf:someorg/somemodel"),
    ("hf:someorg/definitely-not-cached", "could not get hf:someorg/definitely-not-cached"),
    ("timm:not_a_model_at_all", "timm has no model named"),
    ("timm:vit_tiny_patch16_224", "pass --checkpoint"),  # offline: pretrained weights unreachable
    ("", "non-empty"),
])
def test_bad_sources(source, fragment):
    with pytest.raises(PelaError, match=fragment):
        pela.load_model(source)


def test_timm_checkpoint(tmp_path):
    ref = pela.load_model("timm:vit_tiny_patch16_224", random_init=True, **TIMM_VIT)
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    model = pela.load_model("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / "w.safetensors"), **TIMM_VIT)
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), model.state_dict().values()))
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    with pytest.raises(PelaError, match="pickle"):
        pela.load_model("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / "w.pth"), **TIMM_VIT)
    other = pela.load_model("timm:vit_tiny_patch16_224", random_init=True, **{**TIMM_VIT, "embed_dim": 48})
    save_file(other.state_dict(), tmp_path / "other.safetensors")
    with pytest.raises(PelaError, match="does not fit"):
        pela.load_model("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / "other.safetensors"), **TIMM_VIT)


def test_hf_directory(hf_bert_dir):
    model = pela.load_model(str(hf_bert_dir))
    assert type(model).__name__ == "BertModel" and not model.training
    assert model.pela_source == {"kind": "hf", "class": "BertModel"}


def test_hf_directory_with_only_pickles_is_refused(hf_bert_dir):
    (hf_bert_dir / "model.safetensors").rename(hf_bert_dir / "pytorch_model.bin")
    with pytest.raises(PelaError, match="pickle files are loaded only with --allow-pickle"):
        pela.load_model(str(hf_bert_dir))
    assert pela.load_model(str(hf_bert_dir), random_init=True) is not None


def test_directory_that_is_no_model(tmp_path):
    with pytest.raises(PelaError, match="neither a pela model"):
        pela.load_model(str(tmp_path))
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(PelaError, match="is a file"):
        pela.load_model(str(tmp_path / "f.txt"))
