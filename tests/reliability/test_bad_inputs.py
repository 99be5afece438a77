"""A catalogue of user mistakes: each exits with code 2 and one ``error: …`` line naming the problem,
prints no traceback, and leaves no output behind (see docs/RELIABILITY.md)."""

from __future__ import annotations

import gzip
import json
import shutil

import datasets
import pytest
import torch

import pela
from pela.cli.app import main

pytestmark = pytest.mark.slow  # a whole command per bad input

WORDS = [f"w{i}" for i in range(95)]
VOCAB = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)


def bert(hidden: int = 32):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """Files for every scenario: models, checkpoints, datasets good and bad."""
    from PIL import Image

    root = tmp_path_factory.mktemp("world")
    for name, hidden in (("teacher", 32), ("other", 48)):
        bert(hidden).save_pretrained(root / name)
        (root / name / "vocab.txt").write_text(VOCAB)
    assert main(["compress", str(root / "teacher"), "--out", str(root / "student"), "--ratio", "4", "--config", "align=1"]) == 0
    assert main(["compress", str(root / "other"), "--out", str(root / "other_student"), "--ratio", "4", "--config", "align=1"]) == 0
    weights = (root / "teacher" / "model.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(weights[: len(weights) // 2])
    (root / "corrupt.safetensors").write_bytes(b"\x13\x00\x00\x00\x00\x00\x00\x00{not json at all}" + bytes(64))
    torch.save({"w": torch.zeros(2)}, root / "pickled.pt")
    (root / "pickled.safetensors").write_bytes((root / "pickled.pt").read_bytes())
    (root / "text.txt").write_text("".join(" ".join(WORDS[(i * 7 + j) % 95] for j in range(6)) + "\n" for i in range(32)))
    (root / "empty.txt").write_text("\n\n")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 8)
    rows = [{"text": f"w{i} w{i + 1}", "label": "a" if i % 2 else "b"} for i in range(16)]
    (root / "labeled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "unlabeled_row.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]) + json.dumps({"text": "w5"}) + "\n")
    (root / "one_class.jsonl").write_text("".join(json.dumps({"text": f"w{i}", "label": "a"}) + "\n" for i in range(8)))
    (root / "data.xyz").write_text("what format is this?\n")
    (root / "notes").mkdir()
    (root / "notes" / "todo.md").write_text("- a file of another kind\n")
    images = root / "images"
    for cls in ("cat", "dog"):
        (images / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 40), (i * 60, 30, 90)).save(images / cls / f"{i}.png")
    (images / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    (root / "a_file").write_text("not a directory\n")
    (root / "lora").mkdir()  # a LoRA adapter whose base is not where its config says
    (root / "lora" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "/no/such/base"}))
    shutil.copy(root / "teacher" / "model.safetensors", root / "lora" / "adapter_model.safetensors")
    (root / "exists").mkdir()
    (root / "exists" / "keep.txt").write_text("precious\n")
    # an unfinished distillation run with a checkpoint, on other data than the resume below
    from pela.data.load import load_dataset

    pela.distill(pela.load(root / "student"), pela.load(str(root / "teacher")), load_dataset(root / "text.txt"),
                 pela.DistillConfig(steps=4, batch_size=8, save_every=2), out=root / "run_a",
                 run_info={"student": str(root / "student"), "teacher": str(root / "teacher"), "data": str(root / "text.txt")})
    assert (root / "run_a" / "checkpoints" / "latest.json").exists()
    assert main(["finetune", str(root / "student"), "--data", str(root / "labeled.jsonl"), "--out", str(root / "tuned"), "--steps", "1",
                 "--batch-size", "4", "--json"]) == 0
    (root / "new_labels.jsonl").write_text("".join(json.dumps({"text": f"w{i}", "label": "zebra" if i % 2 else "giraffe"}) + "\n" for i in range(4)))
    (root / "scores.tsv").write_text("text\tlabel\nw1 w2\t3.8\nw3\t0.5\n")  # STS-B: similarity scores, not classes
    (root / "splits" / "train" / "cat").mkdir(parents=True)  # a train split and no other
    (root / "broken.parquet").write_bytes(b"PAR1" + bytes(16))
    (root / "broken.arrow").write_bytes(b"ARROW1" + bytes(16))
    (root / "cut.txt.gz").write_bytes(gzip.compress(b"a line of text\n" * 100)[:40])  # a download cut short
    (root / "open_quote.csv").write_text('text\nfine\n"a quote that never closes\nswallows the rest\nof the file\n')
    (root / "headerless.csv").write_text('"1","w1 w2","w3"\n"2","w4","w5 w6"\n')  # AG News' layout: which column is the text?
    from transformers import ViTConfig, ViTForImageClassification

    vit = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=64, num_labels=2))
    vit.save_pretrained(root / "hf_vit")  # and not its image processor: how would images be resized and normalized?
    bert().save_pretrained(root / "no_tokenizer")  # transformers would make up a tokenizer of special tokens alone
    for cls in ("cat", "dog"):
        (root / "good_images" / cls).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(root / "good_images" / cls / "0.png")
    return root


D = "distill --student {student} --teacher {teacher} --data {text} --steps 2 --batch-size 8"
C = "compress {teacher}"
F = "finetune {student} --steps 2 --batch-size 4"

CASES = [
    # sources and weights
    ("unknown source", "compress nosuch:model", "unknown model source"),
    ("offline hub id", "compress hf:nobody/nothing-here", "nobody/nothing-here"),
    ("missing checkpoint", "compress timm:vit_tiny_patch16_224 --checkpoint {root}/missing.safetensors", "does not exist"),
    ("corrupt checkpoint", "compress timm:vit_tiny_patch16_224 --checkpoint {root}/corrupt.safetensors", "not a valid safetensors file"),
    ("truncated checkpoint", "compress timm:vit_tiny_patch16_224 --checkpoint {root}/truncated.safetensors", "not a valid safetensors file"),
    ("pickled checkpoint", "compress timm:vit_tiny_patch16_224 --checkpoint {root}/pickled.safetensors", "pickle"),
    ("pickle without allow_pickle", "compress timm:vit_tiny_patch16_224 --checkpoint {root}/pickled.pt", "allow_pickle=true"),
    ("checkpoint of another architecture", "compress timm:vit_tiny_patch16_224 --checkpoint {teacher}/model.safetensors", "does not fit"),
    ("corrupt pela.json", "compress {broken_meta}", "pela.json"),
    ("LoRA adapter without its base", "compress {root}/lora --out {root}/o", "the base model of"),
    ("teacher checkpoint for a directory", D + " --config teacher_checkpoint={root}/corrupt.safetensors", "applies to timm: sources only"),
    ("missing teacher checkpoint", D.replace("{teacher}", "timm:vit_tiny_patch16_224") + " --config teacher_checkpoint={root}/missing.safetensors",
     "does not exist"),
    # compression settings
    ("ratio 1", C + " --ratio 1", "ratio must be a finite number > 1"),
    ("ratio below 1", C + " --ratio 0.5", "ratio must be a finite number > 1"),
    ("ratio NaN", C + " --ratio nan", "ratio must be a finite number"),
    ("ratio a string", C + " --ratio two", "Invalid value for '--ratio'"),
    ("rank 0", C + " --rank 0", "rank must be an integer >= 1"),
    ("rank above full rank", C + " --rank 100000", "would not make it smaller"),
    ("energy 0", C + " --config energy=0", "energy must be a fraction in (0, 1]"),
    ("energy above 1", C + " --config energy=1.5", "energy must be a fraction in (0, 1]"),
    ("invalid regex", C + " --exclude (", "not a valid regular expression"),
    ("regex matching nothing", C + " --include no_such_layer", "include pattern 'no_such_layer' matches no linear layer"),
    ("param budget 0", C + " --param-budget 0 --calib {text}", "param_budget must be a fraction"),
    # data
    ("empty dataset", D.replace("{text}", "{root}/empty.txt"), "is empty"),
    ("missing dataset", D.replace("{text}", "{root}/missing.txt"), "does not exist"),
    ("binary file as text", D.replace("{text}", "{root}/binary.txt"), "not a text file"),
    ("unknown data format", D.replace("{text}", "{root}/data.xyz"), "data.xyz"),
    ("folder of neither images nor text", D.replace("{text}", "{root}/notes"), "holds no images"),
    ("row without a label", F + " --data {root}/unlabeled_row.jsonl", "label"),
    ("a single class", F + " --data {root}/one_class.jsonl", "at least 2 classes"),
    ("unlabeled data to fine-tune", F + " --data {text}", "labelled data"),
    ("labels the model was not trained on", "eval {root}/tuned --data {root}/new_labels.jsonl",
     "none of the data's classes ('giraffe', 'zebra') is one of the 2 classes the model was trained on"),
    ("corrupt image", "finetune {vit} --data {root}/images --steps 1 --batch-size 2", "broken.png"),
    ("text model saved without its tokenizer", "finetune {root}/no_tokenizer --data {root}/labeled.jsonl --steps 1 --batch-size 2",
     "no_tokenizer has none (its tokenizer would know only 5 special tokens)"),
    ("vision model saved without its image processor", "finetune {root}/hf_vit --data {root}/good_images --steps 1 --batch-size 2",
     "hf_vit has no preprocessor_config.json"),
    ("regression scores as labels", F + " --data {root}/scores.tsv", "'0.5' is a fractional number"),
    ("no evaluation split", "eval {root}/tuned --data {root}/splits", "no test split"),
    ("corrupt Parquet file", D.replace("{text}", "{root}/broken.parquet"), "not a readable Parquet file"),
    ("corrupt Arrow file", D.replace("{text}", "{root}/broken.arrow"), "not a readable Arrow file"),
    ("truncated gzip file", D.replace("{text}", "{root}/cut.txt.gz"), "not a readable gzip file"),
    ("CSV quote that never closes", D.replace("{text}", "{root}/open_quote.csv"), "open_quote.csv:3 opens a quoted field that never closes"),
    ("three text fields", F + " --data {root}/labeled.jsonl --config text_field=text,label,text", "one field, or two"),
    ("headerless CSV with two text columns", F + " --data {root}/headerless.csv", "has no header row, so its columns are named by position"),
    ("max length beyond the model", D + " --config max_length=1000", "at most 64 positions"),
    # training settings
    ("batch size 0", D.replace("--batch-size 8", "--batch-size 0"), "batch_size must be"),
    ("steps 0", D.replace("--steps 2", "--steps 0"), "steps must be an integer >= 1"),
    ("teacher of another architecture", D.replace("{teacher}", "{other}"), "different architectures"),
    ("student not compressed", D.replace("{student}", "{teacher}"), "not a directory written by pela"),
    # output
    ("output exists", D + " --out {root}/exists", "exists"),
    ("output is a file", D + " --out {root}/a_file", "a_file"),
    ("output under a file", D + " --out {root}/a_file/sub", "a_file"),
    ("output folders under a file", C + " --out {root}/a_file/runs/m", "a_file is not a directory"),
    ("unknown weights dtype", F + " --data {root}/labeled.jsonl --config save_dtype=int8", "weights can be saved in float32, bfloat16, float16"),
    ("resume without checkpoint", D + " --resume", "no checkpoint to resume from"),
    ("keep the best without evaluation data", F + " --data {root}/labeled.jsonl --keep-best accuracy", "--keep-best needs --eval-data"),
    ("patience without a metric to watch", F + " --data {root}/labeled.jsonl --eval-data {root}/labeled.jsonl --config patience=2",
     "patience needs keep_best"),
    # export
    ("export a timm model", "export {vit}", "is a timm model; export writes Hugging Face directories"),
    ("export a model pela did not write", "export {teacher}", "is not a directory written by pela"),
    ("export over a file", "export {student} --out {root}/a_file", "a_file"),
    ("resume another run's checkpoint", D.replace("--steps 2", "--steps 6").replace("{text}", "{root}/labeled.jsonl") + " --out {run_b} --resume", "belongs to another run"),
]


def _argv(template: str, w, tmp_path) -> list[str]:
    if "{broken_meta}" in template:
        shutil.copytree(w / "student", tmp_path / "broken")
        (tmp_path / "broken" / "pela.json").write_text("{ this is not json")
    if "{run_b}" in template:
        shutil.copytree(w / "run_a", tmp_path / "run_b")
        (tmp_path / "run_b" / "pela.json").unlink(missing_ok=True)
    if "{vit}" in template and not (w / "vit").exists():
        from conftest import TIMM_VIT

        pela.save_pretrained(pela.load("timm:vit_tiny_patch16_224", random_init=True, **TIMM_VIT), w / "vit")
    names = dict(root=w, teacher=w / "teacher", other=w / "other", student=w / "student", text=w / "text.txt", vit=w / "vit",
                 broken_meta=tmp_path / "broken", run_b=tmp_path / "run_b", out="{out}")
    argv = template.format(**names).split()
    if "--out" not in argv and argv[0] != "eval":
        argv += ["--out", "{out}"]
    return [str(tmp_path / "out") if a == "{out}" else a for a in argv]


@pytest.mark.parametrize("name, template, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(w, tmp_path, capsys, name, template, fragment):
    argv = _argv(template, w, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, err)
    lines = err.strip("\n").splitlines()
    assert lines[-1].startswith("error: ") and sum(line.startswith("error:") for line in lines) == 1, err  # progress bars may precede it
    assert "Traceback" not in err + out
    assert fragment in lines[-1], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output left behind
    assert (w / "exists" / "keep.txt").read_text() == "precious\n"


def test_unreadable_dataset(w, tmp_path, capsys, monkeypatch):
    """Permission denied (simulated: the tests may run as root, who can read anything)."""
    import pela.data.load

    real = pela.data.load.os.access
    monkeypatch.setattr(pela.data.load.os, "access", lambda p, mode: False if str(p).endswith("text.txt") else real(p, mode))
    argv = _argv(D, w, tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "text.txt" in last and "not readable" in last, err
    assert not (tmp_path / "out").exists()
    from pela.data.load import load_dataset

    with pytest.raises(pela.PelaError, match="not readable"):  # the API says the same
        load_dataset(w / "text.txt")


def test_catalogue_is_large_enough():
    assert len({c[0] for c in CASES}) >= 25


# ---------------------------------------------------------------- the same mistakes through the Python API
def _api_cases(w, tmp_path):
    from pela.data.load import load_dataset

    student = lambda: pela.load(w / "student")  # noqa: E731
    teacher = lambda: pela.load(str(w / "teacher"))  # noqa: E731
    return [
        ("ratio a string", lambda: pela.LowRankConfig(ratio="2"), "ratio must be"),
        ("rank above full rank", lambda: pela.compress(teacher(), pela.LowRankConfig(rank=10**6)), "would not make it smaller"),
        ("energy outside (0, 1]", lambda: pela.LowRankConfig(energy=0), "energy must be"),
        ("param budget without calibration", lambda: pela.compress(teacher(), pela.LowRankConfig(param_budget=0.5)), "needs calibration"),
        ("not a module", lambda: pela.compress("model"), "expects a torch.nn.Module"),
        ("compressed twice", lambda: pela.compress(student()), "already compressed"),
        ("unknown source", lambda: pela.load("nosuch:model"), "unknown model source"),
        ("missing model directory", lambda: pela.load(w / "missing"), "missing does not exist (not a directory"),
        ("missing dataset", lambda: load_dataset(w / "missing.txt"), "does not exist"),
        ("steps 0", lambda: pela.DistillConfig(steps=0), "steps must be"),
        ("teacher of another architecture", lambda: pela.distill(student(), pela.load(str(w / "other")), load_dataset(w / "text.txt")),
         "different architectures"),
        ("save over an existing directory", lambda: pela.save_pretrained(student(), w / "exists"), "exists"),
        ("empty calibration data", lambda: pela.calibrate(teacher(), []), "empty"),
        ("empty comparison data", lambda: pela.compare(student(), teacher(), []), "empty"),
        ("compare on 0 samples", lambda: pela.compare(student(), teacher(), load_dataset(w / "text.txt"), samples=0), "samples and batch size"),
        ("a DatasetDict, not one split", lambda: pela.calibrate(teacher(), datasets.DatasetDict({"train": datasets.Dataset.from_dict(
            {"text": ["a b"]})})), "pass one split of the DatasetDict (its splits: train)"),
        ("a list of numbers as data", lambda: pela.calibrate(teacher(), [1, 2, 3]), "a list of examples holds texts or (text, label) pairs"),
        ("a timm name offline, not cached", lambda: pela.load("timm:vit_tiny_patch16_224"), "could not fetch pretrained weights"),
    ]


def test_api_raises_pela_error(w, tmp_path):
    """Every API mistake raises `pela.PelaError` (a `ValueError`), with the same message the CLI prints."""
    for name, call, fragment in _api_cases(w, tmp_path):
        with pytest.raises(pela.PelaError, match=None) as info:
            call()
        assert isinstance(info.value, ValueError) and fragment in str(info.value) and "\n" not in str(info.value), (name, info.value)
    assert (w / "exists" / "keep.txt").read_text() == "precious\n"


def test_odd_image_modes_and_sizes_are_converted_not_refused(w, tmp_path, capsys):
    """Grayscale, palette and RGBA images of any size go through the model's own transform."""
    from PIL import Image

    _argv("finetune {vit}", w, tmp_path)  # builds the tiny ViT directory
    for cls, mode, size in (("a", "L", (28, 28)), ("a", "P", (17, 90)), ("b", "RGBA", (300, 41)), ("b", "I;16", (33, 33))):
        (tmp_path / "imgs" / cls).mkdir(parents=True, exist_ok=True)
        Image.new(mode, size).save(tmp_path / "imgs" / cls / f"{mode.replace(';', '')}.png")
    code = main(["finetune", str(w / "vit"), "--data", str(tmp_path / "imgs"), "--out", str(tmp_path / "ft"), "--steps", "1",
                 "--batch-size", "4", "--json"])
    assert code == 0, capsys.readouterr().err
