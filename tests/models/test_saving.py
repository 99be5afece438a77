import json

import pytest
import torch
from conftest import TIMM_VIT
from torch import nn

import pela
from pela import LowRankConfig, PelaError
from pela.arch.inputs import example_inputs
from pela.models.sources import load_for_training


def _outputs(model):
    inputs = example_inputs(model, batch_size=2, seq_len=8)
    with torch.no_grad():
        out = model(*inputs) if isinstance(inputs, tuple) else model(**inputs)
    return out if torch.is_tensor(out) else out[0]


def test_timm_round_trip_is_bitwise(tmp_path):
    model = pela.load("timm:vit_tiny_patch16_224", random_init=True, **TIMM_VIT)
    pela.compress(model, LowRankConfig(ratio=2, align=1))
    pela.save_pretrained(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "pela.json").read_text())
    assert meta["source"] == {"kind": "timm", "name": "vit_tiny_patch16_224", "kwargs": json.loads(json.dumps(TIMM_VIT))}
    assert meta["factorized"]["blocks.0.attn.qkv"]["rank"] > 0
    loaded = pela.load(tmp_path / "m")
    assert torch.equal(_outputs(loaded), _outputs(model))


def test_hf_round_trip_keeps_tokenizer_files(hf_bert_dir, tmp_path):
    model = pela.load(str(hf_bert_dir))
    pela.compress(model, LowRankConfig(ratio=2, align=1))
    pela.save_pretrained(model, tmp_path / "m")
    assert {"config.json", "vocab.txt", "model.safetensors", "pela.json"} <= {p.name for p in (tmp_path / "m").iterdir()}
    loaded = pela.load(str(tmp_path / "m"))  # a pela directory is a valid source too
    assert torch.equal(_outputs(loaded), _outputs(model))


def test_custom_model_needs_its_architecture(tmp_path, mlp):
    pela.compress(mlp, LowRankConfig(align=1))
    pela.save_pretrained(mlp, tmp_path / "m")
    with pytest.raises(PelaError, match="does not record its architecture"):
        pela.load(tmp_path / "m")
    fresh = nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 64), nn.GELU(), nn.Linear(64, 4))
    loaded = pela.load(tmp_path / "m", model=fresh)
    x = torch.randn(3, 64)
    assert torch.equal(loaded(x), mlp.eval()(x))


def test_wrong_architecture_is_refused(tmp_path, mlp):
    pela.compress(mlp, LowRankConfig(align=1))
    pela.save_pretrained(mlp, tmp_path / "m")
    other = nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 32), nn.GELU(), nn.Linear(32, 4))
    with pytest.raises(PelaError, match="96->32 here but 96->64"):
        pela.load(tmp_path / "m", model=other)
    smaller = nn.Sequential(nn.Linear(64, 96))
    with pytest.raises(PelaError, match="does not have as a linear layer"):
        pela.load(tmp_path / "m", model=smaller)










def test_existing_output_needs_overwrite(tmp_path, mlp):
    pela.save_pretrained(mlp, tmp_path / "m")
    with pytest.raises(PelaError, match="already exists"):
        pela.save_pretrained(mlp, tmp_path / "m")
    pela.save_pretrained(mlp, tmp_path / "m", overwrite=True)
    (tmp_path / "f").write_text("x")
    with pytest.raises(PelaError, match="not a directory"):
        pela.save_pretrained(mlp, tmp_path / "f")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "m"]  # no temporary left behind


def test_missing_parent_folders_are_created(tmp_path, mlp):
    pela.save_pretrained(mlp, tmp_path / "runs" / "a" / "m")
    assert (tmp_path / "runs" / "a" / "m" / "model.safetensors").is_file()
    (tmp_path / "f").write_text("x")
    with pytest.raises(PelaError, match="f is not a directory"):
        pela.save_pretrained(mlp, tmp_path / "f" / "sub" / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "runs"]


def test_tied_weights_round_trip(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=32)).eval()
    pela.compress(model, LowRankConfig(align=1))
    pela.save_pretrained(model, tmp_path / "m")
    loaded = pela.load(tmp_path / "m")
    ids = torch.randint(0, 100, (2, 8))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_model_comes_back_in_its_dtype(tmp_path, hf_bert_dir, dtype):
    model = pela.load(str(hf_bert_dir))
    pela.compress(model, LowRankConfig(align=1))
    model.to(dtype)
    pela.save_pretrained(model, tmp_path / "m")
    loaded = pela.load(tmp_path / "m")
    assert {p.dtype for p in loaded.parameters()} == {dtype}
    x = torch.randint(5, 100, (2, 8))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=x).last_hidden_state, model(input_ids=x).last_hidden_state)


def test_save_in_half_precision_leaves_the_model_as_it_was(tmp_path):
    """dtype= writes the weights in bfloat16 (half the file) without touching the float32 model, tied
    weights included; pela.load gives the bfloat16 model, pela.models.sources.load_for_training upcasts it to train."""
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=32)).eval()
    pela.compress(model, LowRankConfig(align=1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pela.save_pretrained(model, tmp_path / "f32")
    pela.save_pretrained(model, tmp_path / "bf16", dtype="bfloat16")
    assert all(torch.equal(v, before[k]) and v.dtype == before[k].dtype for k, v in model.state_dict().items())
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    size = lambda d: (tmp_path / d / "model.safetensors").stat().st_size  # noqa: E731
    assert 0.45 < size("bf16") / size("f32") < 0.55
    loaded = pela.load(tmp_path / "bf16")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert all(torch.equal(v, before[k].to(torch.bfloat16)) for k, v in loaded.state_dict().items() if v.is_floating_point())
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    trainable = load_for_training(str(tmp_path / "bf16"))
    assert {p.dtype for p in trainable.parameters()} == {torch.float32}
    with pytest.raises(PelaError, match="weights can be saved in float32, bfloat16, float16, not 'int8'"):
        pela.save_pretrained(model, tmp_path / "bad", dtype="int8")
    assert not (tmp_path / "bad").exists()
