import json

import pytest
import torch
from conftest import TIMM_VIT, remote_code_model_dir
from safetensors.torch import save_file

import pela
from pela import PelaError
from pela.metadata import info


@pytest.mark.parametrize("source, fragment", [
    ("nonexistent_thing", "unknown model source"),
    ("someorg/somemodel", "write hf:someorg/somemodel"),
    ("hf:someorg/definitely-not-cached", "could not get someorg/definitely-not-cached from the Hugging Face hub"),
    ("timm:hf-hub:someorg/not-cached", "could not get someorg/not-cached from the Hugging Face hub"),
    ("timm:not_a_model_at_all", "timm has no model named"),
    ("timm:vit_tiny_patch16_224", "pass --checkpoint"),  # offline: pretrained weights unreachable
    ("", "non-empty"),
])
def test_bad_sources(source, fragment):
    with pytest.raises(PelaError, match=fragment):
        pela.load(source)


def test_timm_checkpoint(tmp_path):
    ref = pela.load("timm:vit_tiny_patch16_224", random_init=True, **TIMM_VIT)
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    model = pela.load("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / "w.safetensors"), **TIMM_VIT)
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), model.state_dict().values()))
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    with pytest.raises(PelaError, match="pickle"):
        pela.load("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / "w.pth"), **TIMM_VIT)
    other = pela.load("timm:vit_tiny_patch16_224", random_init=True, **{**TIMM_VIT, "embed_dim": 48})
    save_file(other.state_dict(), tmp_path / "other.safetensors")
    with pytest.raises(PelaError, match="does not fit"):
        pela.load("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / "other.safetensors"), **TIMM_VIT)


@pytest.mark.parametrize("classes", [3, 0])
def test_timm_checkpoint_brings_its_number_of_classes(tmp_path, classes):
    """A checkpoint fine-tuned to 3 classes, or saved without a head, fits the architecture's 1000-class default."""
    arch = {k: v for k, v in TIMM_VIT.items() if k != "num_classes"}
    ref = pela.load("timm:vit_tiny_patch16_224", random_init=True, **arch, num_classes=classes)
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    model = pela.load("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / "w.safetensors"), **arch)
    assert model.num_classes == classes and info(model).source["kwargs"]["num_classes"] == classes
    assert ref.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), model.state_dict().values()))
    pela.compress(model, pela.LowRankConfig(ratio=2, align=1))
    pela.save_pretrained(model, tmp_path / "pela")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(pela.load(tmp_path / "pela")(x), model(x))
    # a number of classes the caller chose is kept, and a checkpoint of another is refused
    with pytest.raises(PelaError, match="does not fit"):
        pela.load("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / "w.safetensors"), **arch, num_classes=7)


def test_checkpoints_saved_through_a_training_wrapper(tmp_path):
    """DDP saves module.NAME, Lightning model.NAME, a compiled model _orig_mod.NAME: the prefix every
    name shares is taken off, with the head's size read after it; a file that fits no better keeps its names."""
    arch = {k: v for k, v in TIMM_VIT.items() if k != "num_classes"}
    ref = pela.load("timm:vit_tiny_patch16_224", random_init=True, **arch, num_classes=3)
    save_file({f"module._orig_mod.{k}": v for k, v in ref.state_dict().items()}, tmp_path / "ddp.safetensors")
    torch.save({"state_dict": {f"model.{k}": v for k, v in ref.state_dict().items()}, "epoch": 9}, tmp_path / "lightning.ckpt")
    for name, pickled in (("ddp.safetensors", False), ("lightning.ckpt", True)):
        model = pela.load("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / name), allow_pickle=pickled, **arch)
        assert model.num_classes == 3 and all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), model.state_dict().values()))
    save_file({f"module.{k}": v for k, v in list(ref.state_dict().items())[:3]} | {"other.x": torch.zeros(1)}, tmp_path / "mixed.safetensors")
    with pytest.raises(PelaError, match=r"does not fit this architecture: \d+ missing \(e.g. cls_token\), 4 unexpected \(e.g. module\.cls_token\)"):
        pela.load("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / "mixed.safetensors"), **arch)


def test_timm_class_names_only_for_a_head_of_their_size(tmp_path):
    """The names a timm model's weights came with no longer name a head resized to a checkpoint's classes."""
    arch = {k: v for k, v in TIMM_VIT.items() if k != "num_classes"}
    names = [f"class{i}" for i in range(1000)]
    model = pela.load("timm:vit_tiny_patch16_224", random_init=True, **arch)
    model.pretrained_cfg = {**model.pretrained_cfg, "label_names": names}
    assert pela.arch.class_names(model) == names
    save_file(pela.load("timm:vit_tiny_patch16_224", random_init=True, **arch, num_classes=3).state_dict(), tmp_path / "w.safetensors")
    pela.models.timm_source._load_timm_checkpoint(model, str(tmp_path / "w.safetensors"), {}, allow_pickle=False)
    assert model.num_classes == 3 and pela.arch.class_names(model) is None


def test_timm_checkpoint_with_two_heads(tmp_path):
    """DeiT's distilled models name two classifiers; a 4-class checkpoint resizes both."""
    arch = {k: v for k, v in TIMM_VIT.items() if k != "num_classes"}
    ref = pela.load("timm:deit_tiny_distilled_patch16_224", random_init=True, **arch, num_classes=4)
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    model = pela.load("timm:deit_tiny_distilled_patch16_224", checkpoint=str(tmp_path / "w.safetensors"), **arch)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_hf_directory(hf_bert_dir):
    model = pela.load(str(hf_bert_dir))
    assert type(model).__name__ == "BertModel" and not model.training
    assert info(model).source == {"kind": "hf", "class": "BertModel"}


def test_hf_directory_with_only_pickles_is_refused(hf_bert_dir):
    (hf_bert_dir / "model.safetensors").rename(hf_bert_dir / "pytorch_model.bin")
    with pytest.raises(PelaError, match="pickle files are loaded only with allow_pickle=true"):
        pela.load(str(hf_bert_dir))
    untrained = pela.load(str(hf_bert_dir), random_init=True)  # the architecture alone needs no weights
    assert type(untrained).__name__ == "BertModel" and untrained.config.hidden_size == 32


def test_directory_that_is_no_model(tmp_path):
    with pytest.raises(PelaError, match="neither a pela model"):
        pela.load(str(tmp_path))
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(PelaError, match="is a file"):
        pela.load(str(tmp_path / "f.txt"))


def _timm_dir(tmp_path, safe=True):
    """A tiny timm model saved the way timm shares models (timm.models.save_for_hf), with its own preprocessing."""
    import timm

    model = timm.create_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", pretrained=False, **TIMM_VIT)
    timm.models.save_for_hf(model, str(tmp_path / "timm"), safe_serialization=safe)
    return model.eval(), tmp_path / "timm"


def test_timm_directory_is_built_by_timm_and_keeps_its_preprocessing(tmp_path):
    ref, path = _timm_dir(tmp_path)
    for source in (str(path), f"timm:local-dir:{path}"):
        model = pela.load(source)
        assert type(model).__name__ == "VisionTransformer"  # timm's class, not transformers' TimmWrapper
        assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), model.state_dict().values()))
    assert info(model).source["name"] == "vit_tiny_patch16_224" and info(model).source["kwargs"]["depth"] == 2
    pela.compress(model, pela.LowRankConfig(align=1))
    pela.save_pretrained(model, tmp_path / "k2")
    loaded = pela.load(tmp_path / "k2")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # the weights' own normalization (augreg: mean 0.5), not the architecture's default (ImageNet's)
    assert list(loaded.pretrained_cfg["mean"]) == [0.5, 0.5, 0.5]
    from pela.data.collate import Collator
    assert list(Collator(loaded).timm_data_config["mean"]) == [0.5, 0.5, 0.5]
    # a field a newer timm wrote into the config is ignored by this one, not fatal
    meta = json.loads((tmp_path / "k2" / "pela.json").read_text())
    meta["source"]["pretrained_cfg"]["field_of_a_future_timm"] = 1
    (tmp_path / "k2" / "pela.json").write_text(json.dumps(meta))
    with torch.no_grad():
        assert torch.equal(pela.load(tmp_path / "k2")(x), model(x))


def test_timm_directory_with_only_pickles_needs_allow_pickle(tmp_path):
    ref, path = _timm_dir(tmp_path, safe=False)
    with pytest.raises(PelaError, match="pickle files are loaded only with allow_pickle=true"):
        pela.load(str(path))
    model = pela.load(str(path), allow_pickle=True)
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), model.state_dict().values()))
    assert pela.load(str(path), random_init=True).patch_embed.proj.weight.shape == ref.patch_embed.proj.weight.shape


def test_broken_timm_directory(tmp_path):
    (tmp_path / "config.json").write_text('{"architecture": "no_such_timm_model"}')
    with pytest.raises(PelaError, match="not a usable timm config"):
        pela.load(str(tmp_path))


def test_hub_id_from_the_local_cache_when_offline(tmp_path, monkeypatch):
    """hf:ORG/NAME that was downloaded once loads offline from Hugging Face's cache (models--ORG--NAME)."""
    import huggingface_hub.constants
    from conftest import hf_bert

    repo = tmp_path / "hub" / "models--someorg--tiny-bert"
    ref = hf_bert()
    ref.save_pretrained(repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = pela.load("hf:someorg/tiny-bert")
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), model.state_dict().values()))
    with pytest.raises(PelaError, match="could not get someorg/other from the Hugging Face hub"):
        pela.load("hf:someorg/other")


def test_hub_id_of_a_timm_repository_is_built_by_timm(tmp_path, monkeypatch):
    """hf:timm/NAME downloads a timm-format snapshot; timm builds it (the download itself is faked here)."""
    import pela.models.sources
    import pela.models.timm_source

    ref, path = _timm_dir(tmp_path)
    asked = []
    fake = lambda repo_id, random_init, allow_pickle=False, trust_remote_code=False: asked.append(repo_id) or path  # noqa: E731
    monkeypatch.setattr(pela.models.sources, "hf_snapshot", fake)
    monkeypatch.setattr(pela.models.timm_source, "hf_snapshot", fake)
    for source in ("hf:timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", "timm:hf-hub:timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"):
        model = pela.load(source)
        assert type(model).__name__ == "VisionTransformer" and info(model).source["kind"] == "timm"
        assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), model.state_dict().values()))
    assert asked == ["timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"] * 2
    with pytest.raises(PelaError, match="is not a timm model"):
        pela.load(f"timm:local-dir:{tmp_path}")


def test_half_precision_weights_load_in_float32(hf_bert_dir):
    """Hub models are often shared in float16: SVD and training need float32 (fp16 training went to NaN)."""
    from conftest import hf_bert

    hf_bert().half().save_pretrained(hf_bert_dir)
    for random_init in (False, True):
        model = pela.load(str(hf_bert_dir), random_init=random_init)
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert info(model).weights_dtype == (None if random_init else "float16")  # what a saving command says


def test_sentence_transformers_directory_with_its_transformer_in_a_subfolder(hf_bert_dir, tmp_path):
    import shutil

    root = tmp_path / "st"
    shutil.copytree(hf_bert_dir, root / "0_Transformer")
    (root / "1_Pooling").mkdir()
    (root / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    model = pela.load(str(root))
    assert type(model).__name__ == "BertModel" and info(model).files == str((root / "0_Transformer").resolve())


def test_model_with_its_own_code_runs_only_when_trusted(tmp_path):
    """An architecture transformers lacks, whose code comes with the weights (auto_map): refused without
    trust_remote_code (never a question on the terminal); with it, compressed, saved with its code, reloaded."""
    path = remote_code_model_dir(tmp_path / "custom")
    with pytest.raises(PelaError, match=r"runs its own model code \(configuration_tinynet.py, modeling_tinynet.py\); .*--trust-remote-code"):
        pela.load(str(path))
    model = pela.load(str(path), trust_remote_code=True)
    assert info(model).source == {"kind": "hf", "class": "TinyNetModel", "remote_code": True, "auto_class": "AutoModel"}
    report = pela.compress(model, pela.LowRankConfig(ratio=2, align=1))
    assert sorted(r.name for r in report.layers if r.status == "factorized") == [f"layers.{i}.fc{j}" for i in range(2) for j in (1, 2)]
    pela.save_pretrained(model, tmp_path / "pela")
    assert (tmp_path / "pela" / "modeling_tinynet.py").read_text() == (path / "modeling_tinynet.py").read_text()
    with pytest.raises(PelaError, match="--trust-remote-code"):
        pela.load(tmp_path / "pela")
    with pytest.raises(PelaError, match="--trust-remote-code"):
        pela.load(str(tmp_path / "pela"))
    x = torch.randint(0, 100, (2, 7))
    loaded = pela.load(tmp_path / "pela", trust_remote_code=True)
    assert torch.equal(loaded(x).last_hidden_state, model(x).last_hidden_state)
    # a config of a type transformers knows that still names code of its own is not built as that type
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(PelaError, match="runs its own model code"):
        pela.load(str(path))


