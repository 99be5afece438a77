"""`pela export`: a compressed transformers model that transformers loads alone (trust_remote_code=True)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import TIMM_VIT

import pela
from pela import LowRankConfig, PelaError
from pela.cli.app import main
from pela.layers.lowrank import LowRankLinear
from pela.models.export import export_hf

pytestmark = pytest.mark.slow  # exports loaded back through transformers

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]


def saved(model, path, **save):
    """``model`` saved the way users have it, loaded by pela, compressed at k=2 and saved by pela."""
    model.save_pretrained(path / "dense")
    (path / "dense" / "vocab.txt").write_text("\n".join(VOCAB))
    student = pela.load(str(path / "dense"))
    pela.compress(student, LowRankConfig(ratio=2, align=1))
    pela.save_pretrained(student, path / "k2", **save)
    return path / "k2"


def bert(cls_name="BertModel"):
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=64, num_labels=3)
    return getattr(transformers, cls_name)(cfg).eval()


def test_bert_loads_with_transformers_alone_bitwise(tmp_path):
    import transformers

    k2 = saved(bert(), tmp_path)
    export_hf(k2, tmp_path / "hf")
    assert {"config.json", "vocab.txt", "pela_model.safetensors", "modeling_pela.py"} == {p.name for p in (tmp_path / "hf").iterdir()}
    model = transformers.AutoModel.from_pretrained(tmp_path / "hf", trust_remote_code=True)
    ours = pela.load(k2)
    assert type(model) is transformers.BertModel and not model.training
    assert sum(isinstance(m, torch.nn.Module) and type(m).__name__ == "LowRankLinear" for m in model.modules()) == \
        sum(isinstance(m, LowRankLinear) for m in ours.modules()) > 0
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ours.parameters())
    ids = torch.randint(5, 100, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).last_hidden_state, ours(input_ids=ids).last_hidden_state)
    again = pela.load(tmp_path / "hf")  # pela reads its own export, with its own code (modeling_pela.py is not run)
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids).last_hidden_state, ours(input_ids=ids).last_hidden_state)
    # without the code, transformers stops (no model.safetensors) rather than leave the factorized layers random
    with pytest.raises(OSError, match="model.safetensors"):
        transformers.AutoModel.from_pretrained(tmp_path / "hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tokenizer("w1 w2")["input_ids"][1:3] == [6, 7]


@pytest.mark.slow
def test_the_code_needs_no_pela(tmp_path):
    k2 = saved(bert(), tmp_path)
    export_hf(k2, tmp_path / "hf")
    script = ("import sys; sys.modules['pela'] = None  # any import of pela fails\n"
              "import transformers\n"
              f"m = transformers.AutoModel.from_pretrained({str(tmp_path / 'hf')!r}, trust_remote_code=True)\n"
              "print(type(m).__name__, type(m.encoder.layer[0].intermediate.dense).__name__)\n")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["BertModel", "LowRankLinear"]


def test_a_classifier_in_half_precision(tmp_path):
    import transformers

    k2 = saved(bert("BertForSequenceClassification"), tmp_path, dtype="bfloat16")
    export_hf(k2, tmp_path / "hf")
    auto_map = json.loads((tmp_path / "hf" / "config.json").read_text())["auto_map"]
    assert next(iter(auto_map)) == "AutoModelForSequenceClassification" and "AutoModel" in auto_map
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf", trust_remote_code=True, dtype="auto")
    assert model.classifier.weight.dtype == torch.bfloat16  # "auto": the dtype the weights were saved in
    ours = pela.load(k2)  # in the dtype it was saved in, too
    ids = torch.randint(5, 100, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, ours(input_ids=ids).logits)
        default = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf", trust_remote_code=True)
        assert default.classifier.weight.dtype == torch.float32  # as transformers does without dtype=
        assert torch.equal(default(input_ids=ids).logits, ours.float()(input_ids=ids).logits)


def test_a_language_model_generates_the_same(tmp_path):
    import transformers

    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=32)).eval()
    k2 = saved(gpt2, tmp_path)
    export_hf(k2, tmp_path / "hf")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", trust_remote_code=True)
    ours = pela.load(k2)
    ids = torch.randint(0, 100, (1, 5))
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(model.generate(ids, **kwargs), ours.generate(ids, **kwargs))
    assert model.transformer.wte.weight is model.lm_head.weight  # tied, as the architecture ties them


def test_what_cannot_be_exported(tmp_path, capsys):
    timm_dir = pela.save_pretrained(pela.load("timm:vit_tiny_patch16_224", random_init=True, **TIMM_VIT), tmp_path / "vit")
    with pytest.raises(PelaError, match="is a timm model; export writes Hugging Face directories"):
        export_hf(timm_dir, tmp_path / "out")
    k2 = saved(bert(), tmp_path)
    cases = [([tmp_path / "vit"], "is a timm model"), ([tmp_path / "dense"], "is not a directory written by pela")]
    headed = pela.load(k2)
    from pela.arch.classifier import SequenceClassifier

    pela.save_pretrained(SequenceClassifier(headed, 32, 3, hidden_states=True), tmp_path / "headed")
    cases.append(([tmp_path / "headed"], "has a classification head added by pela finetune on a model with a head of another kind"))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    cases.append(([k2, "--out", tmp_path / "taken"], "exists and is not empty"))
    capsys.readouterr()  # the set-up's own progress bars
    for args, fragment in cases:
        code = main(["export", *map(str, args), *([] if "--out" in args else ["--out", str(tmp_path / "out")])])
        _, err = capsys.readouterr()
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "out").exists()
    assert main(["export", str(k2), "--out", str(tmp_path / "out")]) == 0
    out, _ = capsys.readouterr()
    assert "AutoModel.from_pretrained(" in out and "trust_remote_code=True" in out


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_a_head_pela_finetune_added(tmp_path, pooling):
    """MiniLM-like: a BertModel, fine-tuned by pela with a pooled head of its own, shipped as a classifier."""
    import transformers

    from pela import FinetuneConfig

    k2 = saved(bert(), tmp_path)
    student = pela.load(k2)
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(f"w{int(i)}" for i in torch.randint(0, 95, (5,), generator=g)) for _ in range(24)]
    rows = [{"text": t, "label": ["neg", "neu", "pos"][int(t.split()[0][1:]) % 3]} for t in texts]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from pela.data.load import load_dataset

    tuned, _ = pela.finetune(student, load_dataset(tmp_path / "train.jsonl"), FinetuneConfig(steps=2, batch_size=8, pooling=pooling))
    pela.save_pretrained(tuned, tmp_path / "tuned")
    export_hf(tmp_path / "tuned", tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert next(iter(config["auto_map"])) == "AutoModelForSequenceClassification" and config["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf", trust_remote_code=True)
    ours = pela.load(tmp_path / "tuned")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    batch = tokenizer(["w1 w2 w3", "w4 w5 w6 w7 w8 w9 w10"], padding=True, return_tensors="pt")  # padding: the mask matters
    with torch.no_grad():
        theirs = model(**batch, labels=torch.tensor([0, 2]))
        assert torch.equal(theirs.logits, ours(**batch))
        # pela reads its own export too (with its own code, not the directory's), classes and all
        again = pela.load(tmp_path / "hf")
        assert torch.equal(again(**batch), theirs.logits) and pela.metadata.info(again).classes == ["neg", "neu", "pos"]
    assert theirs.loss is not None and model.config.id2label[int(theirs.logits[0].argmax())] in ("neg", "neu", "pos")
