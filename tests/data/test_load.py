import gzip
import json

import numpy as np
import pytest
import torch
from conftest import hf_vit, timm_vit
from PIL import Image

from pela import PelaError
from pela.data.collate import Collator
from pela.data.load import describe, load_dataset
from pela.metadata import info


def write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_text_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\nsecond line\n")
    ds = load_dataset(tmp_path / "a.txt")
    assert len(ds) == 2 and ds[1] == {"text": "second line"}
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": f"t{i}", "label": "xy"[i % 2]}) for i in range(4)))
    ds = load_dataset(tmp_path / "b.jsonl")
    assert ds.classes == ["x", "y"] and ds[1] == {"text": "t1", "label": 1}
    (tmp_path / "c.csv").write_text("text,label\nhello,a\nworld,b\n")
    assert load_dataset(tmp_path / "c.csv")[0] == {"text": "hello", "label": 0}
    # GLUE's tab-separated files: a quote is text, not quoting; integer classes in numeric order
    (tmp_path / "d.tsv").write_text('sentence\tlabel\nit \'s " fine\t10\nnot, at all\t9\nok\t1\n')
    ds = load_dataset(tmp_path / "d.tsv", text_field="sentence")
    assert ds.classes == ["1", "9", "10"] and ds[0] == {"text": 'it \'s " fine', "label": 2} and ds[1]["text"] == "not, at all"


@pytest.mark.parametrize("name, content, fragment", [
    ("empty.txt", "\n\n", "is empty"),
    ("bad.jsonl", '{"text": "a"}\n{oops\n', "bad.jsonl:2 is not valid JSON"),
    ("nofield.jsonl", '{"score": 3, "label": "a"}\n', "has no 'text' field"),
    ("mixed.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', "record 2 has no 'label'"),
    ("empty.csv", "text,label\n", "is empty"),
    ("stsb.tsv", "text\tlabel\na\t4.25\nb\t1.0\n", "'4.25' is a fractional number; pela fine-tunes classifiers"),
    ("multi.jsonl", '{"text": "a", "label": ["x", "y"]}\n', "record 1 has a list of labels; pela fine-tunes single-label"),
    ("blank.jsonl", '{"text": "a"}\n\n\n{"text": "b"\n', "blank.jsonl:4 is not valid JSON"),
    ("open.csv", 'text,label\nfine,a\n"hello,a\nworld,b\n', "open.csv:3 opens a quoted field that never closes"),
])
def test_bad_text_data(tmp_path, name, content, fragment):
    (tmp_path / name).write_text(content)
    with pytest.raises(PelaError, match=fragment):
        load_dataset(tmp_path / name)


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(PelaError, match="does not exist"):
        load_dataset(tmp_path / "nope.txt")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(PelaError, match="empty_dir holds no images .* or .txt files; to read one text file, pass the file itself"):
        load_dataset(tmp_path / "empty_dir")
    (tmp_path / "empty_dir" / "cats").mkdir()
    (tmp_path / "empty_dir" / "cats" / "notes.md").write_text("x")
    with pytest.raises(PelaError, match=r"or .txt files \(or files with no suffix\) in its class sub-folders"):
        load_dataset(tmp_path / "empty_dir")


def test_fortune_format(tmp_path):
    """Records separated by lines holding only %, as fortune's files are: one example per record."""
    (tmp_path / "cookies").write_text("first,\n  on two lines\n%\nsecond\n%\n\n%\n% not a separator\n100%\n%\n")
    ds = load_dataset(tmp_path / "cookies")
    assert [ds[i]["text"] for i in range(len(ds))] == ["first,\n  on two lines", "second", "% not a separator\n100%"]
    assert ds.lengths == [len("first,\n  on two lines\n"), len("second\n"), len("% not a separator\n100%\n")]
    (tmp_path / "percent.txt").write_text("a\n%\nb c\n")  # one lone % line: an ordinary text, one example per line
    assert [load_dataset(tmp_path / "percent.txt")[i]["text"] for i in range(3)] == ["a", "%", "b c"]
    (tmp_path / "corpus.txt").write_text("%\n" + "".join(f"line {i}\n" for i in range(200)) + "%\n")  # 2 stray % lines in 202
    assert len(load_dataset(tmp_path / "corpus.txt")) == 202


def test_text_folders(tmp_path, hf_bert_dir):
    """.txt files in class sub-folders (IMDB's layout), or flat: one example per file."""
    for cls, texts in (("neg", ["awful.", "dull\nand long"]), ("pos", ["great!"])):
        (tmp_path / "imdb" / cls).mkdir(parents=True)
        for i, text in enumerate(texts):
            (tmp_path / "imdb" / cls / f"{i}.txt").write_text(text + "\n")
    (tmp_path / "imdb" / "pos" / "urls.md").write_text("not an example")
    ds = load_dataset(tmp_path / "imdb")
    assert ds.classes == ["neg", "pos"] and len(ds) == 3
    assert [ds[i] for i in range(3)] == [{"text": "awful.", "label": 0}, {"text": "dull\nand long", "label": 0}, {"text": "great!", "label": 1}]
    assert ds.lengths == [7, 14, 7]
    flat = load_dataset(tmp_path / "imdb" / "neg")
    assert flat.classes is None and flat[1] == {"text": "dull\nand long"}
    import pela

    batch = Collator(pela.load(str(hf_bert_dir)))([ds[0], ds[2]])
    assert batch["input_ids"].shape[0] == 2 and batch["labels"].tolist() == [0, 1]


def test_class_folders_of_files_without_a_suffix(tmp_path):
    """20 Newsgroups: class folders of documents named by number, some not UTF-8; hidden files are not documents."""
    for cls, docs in (("alt.atheism", [b"From: a\n\nGod?\n", b"caf\xe9\n"]), ("sci.space", [b"Orbits.\n"])):
        (tmp_path / "news" / cls).mkdir(parents=True)
        for i, doc in enumerate(docs):
            (tmp_path / "news" / cls / str(49960 + i)).write_bytes(doc)
    (tmp_path / "news" / "sci.space" / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "news" / "sci.space" / "old").mkdir()  # a folder has no suffix either
    ds = load_dataset(tmp_path / "news")
    assert ds.classes == ["alt.atheism", "sci.space"] and len(ds) == 3
    assert [ds[i] for i in range(3)] == [{"text": "From: a\n\nGod?", "label": 0}, {"text": "caf\ufffd", "label": 0}, {"text": "Orbits.", "label": 1}]
    assert describe(ds)["kind"] == "folder of text files"
    (tmp_path / "news" / "sci.space" / "49970.txt").write_text("a .txt file")  # .txt files, where there are some, are the examples
    assert len(load_dataset(tmp_path / "news")) == 1


def test_image_folder_and_timm_preprocessing(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.full((40, 50, 3), i * 60, np.uint8)).save(tmp_path / cls / f"{i}.png")
    Image.new("L", (20, 20)).save(tmp_path / "cat" / "gray.png")  # another mode: converted to RGB
    (tmp_path / "dog" / "broken.png").write_bytes(b"not an image")
    ds = load_dataset(tmp_path)
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    batch = Collator(timm_vit())([ds[0], ds[2]])
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["labels"].tolist() == [0, 0]
    broken = next(i for i, (p, _) in enumerate(ds.items) if p.name == "broken.png")
    with pytest.raises(PelaError, match="cannot read image"):
        ds[broken]


def test_fashion_mnist_idx(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.random.randint(0, 255, (5, 28, 28)), gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 9]), gz=True)
    ds = load_dataset(tmp_path)
    assert len(ds) == 5 and ds[4]["label"] == 9 and ds[0]["image"].mode == "RGB"
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1]), gz=True)
    with pytest.raises(PelaError, match="5 images but"):
        load_dataset(tmp_path)


def test_hf_image_processor(tmp_path):
    from transformers import ViTImageProcessor

    model = hf_vit()
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    info(model).files = str(tmp_path)
    batch = Collator(model)([{"image": Image.new("RGB", (64, 48))}])
    assert batch["pixel_values"].shape == (1, 3, 32, 32)


def test_text_is_truncated_to_the_models_limit(hf_bert_dir):
    import pela

    model = pela.load(str(hf_bert_dir))
    batch = Collator(model, max_length=16)([{"text": " ".join(["w1"] * 500)}, {"text": "w2"}])
    assert batch["input_ids"].shape == (2, 16)


def test_image_caption_pairs(tmp_path, hf_bert_dir):
    from transformers import AutoTokenizer

    Image.new("RGB", (40, 40), "red").save(tmp_path / "a.png")
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"image": "a.png", "text": "w1 w2"}) + "\n")
    ds = load_dataset(tmp_path / "pairs.jsonl")
    assert ds[0]["text"] == "w1 w2" and ds[0]["image"].size == (40, 40)
    collate = Collator(timm_vit(), tokenizer=AutoTokenizer.from_pretrained(hf_bert_dir),
                       image_transform=lambda im: torch.zeros(3, 32, 32))
    batch = collate([ds[0], ds[0]])
    assert batch["input_ids"].shape[0] == 2 and batch["pixel_values"].shape == (2, 3, 32, 32)


def test_evaluation_data_keeps_the_training_label_mapping(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps({"text": "t", "label": c}) for c in "abc"))
    (tmp_path / "test.jsonl").write_text(json.dumps({"text": "t", "label": "c"}) + "\n")
    train = load_dataset(tmp_path / "train.jsonl")
    assert load_dataset(tmp_path / "test.jsonl")[0]["label"] == 0  # alone, 'c' would be class 0 ...
    assert load_dataset(tmp_path / "test.jsonl", classes=train.classes)[0]["label"] == 2  # ... but it is class 2
    (tmp_path / "other.jsonl").write_text(json.dumps({"text": "t", "label": "z"}) + "\n")
    with pytest.raises(PelaError, match="'z' is not one of the 3 classes"):
        load_dataset(tmp_path / "other.jsonl", classes=train.classes)


def test_collator_pickles_small_for_spawned_loader_workers(hf_bert_dir):
    """Workers started by spawn/forkserver get the collator pickled: it must not drag the model along."""
    import pickle

    import pela

    model = pela.load(str(hf_bert_dir))
    collate = Collator(model, max_length=16)
    examples = [{"text": "w1 w2 w3"}, {"text": "w4"}]
    expected = collate(examples)  # the tokenizer is loaded now, and pickled with the collator
    blob = pickle.dumps(collate)
    assert len(blob) < sum(p.numel() * p.element_size() for p in model.parameters()) / 4
    again = pickle.loads(blob)(examples)
    assert all(torch.equal(expected[k], again[k]) for k in expected)
    vit = Collator(timm_vit())
    image = Image.new("RGB", (40, 30), "blue")
    assert torch.equal(pickle.loads(pickle.dumps(vit))([{"image": image}])["pixel_values"], vit([{"image": image}])["pixel_values"])


def test_timm_preprocessing_follows_the_size_the_model_was_built_for():
    """A model at its pretrained size keeps its pretrained evaluation transform (crop_pct included); one
    built with img_size=... gets images of that size, wherever its patch embedding is (or if it has none)."""
    import timm

    import pela
    from pela.data.collate import _timm_data_config

    pretrained_size = timm.create_model("vit_tiny_patch16_224", depth=1)
    cfg = _timm_data_config(pretrained_size)
    assert cfg["input_size"] == (3, 224, 224) and cfg["crop_pct"] == pretrained_size.pretrained_cfg["crop_pct"] < 1
    assert _timm_data_config(timm_vit())["input_size"] == (3, 32, 32)
    mixer = timm.create_model("mixer_s16_224", img_size=32, num_classes=3)  # patch embedding called stem
    assert _timm_data_config(mixer)["input_size"] == (3, 32, 32)
    hiera = pela.load("timm:hiera_tiny_224", random_init=True, img_size=64, embed_dim=16, num_heads=1, stages=(1, 1, 1, 1))
    image = Image.fromarray(np.zeros((80, 90, 3), dtype=np.uint8))
    x = Collator(hiera)([{"image": image}])["pixel_values"]  # no img_size anywhere in it: the one recorded at load
    assert x.shape == (1, 3, 64, 64) and hiera(x).shape[0] == 1


def test_folder_of_split_folders(tmp_path):
    """root/train/<class>/..., root/val/<class>/...: the splits are not two classes."""
    for split, n in (("train", 2), ("val", 1)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8)).save(tmp_path / split / cls / f"{i}.png")
    train = load_dataset(tmp_path)
    assert train.classes == ["cat", "dog"] and len(train) == 4
    test = load_dataset(tmp_path, split="test", classes=train.classes)
    assert len(test) == 2 and [test[i]["label"] for i in range(2)] == [0, 1]
    for name in ("validation", "val", "dev"):  # the held-out split by any of its usual names
        assert len(load_dataset(tmp_path, split=name)) == 2
    (tmp_path / "val").rename(tmp_path / "training")
    with pytest.raises(PelaError, match="no test split"):
        load_dataset(tmp_path, split="test")


def test_image_folder_with_metadata(tmp_path):
    """Hugging Face's imagefolder layout: train/metadata.jsonl names each file's label."""
    (tmp_path / "train").mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8)).save(tmp_path / "train" / f"{i}.png")
    (tmp_path / "train" / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"{i}.png", "label": "ab"[i % 2]}) + "\n" for i in range(4)))
    ds = load_dataset(tmp_path)
    assert ds.classes == ["a", "b"] and len(ds) == 4 and ds[3]["label"] == 1 and ds[3]["image"].size == (8, 8)


def test_describe_says_what_pela_reads(tmp_path):
    from pela.data.load import describe

    (tmp_path / "d.tsv").write_text("idx\tsentence\tlabel\n" + "".join(f"{i}\tword {i}\t{'ab'[i % 3 == 0]}\n" for i in range(7)))
    info = describe(load_dataset(tmp_path / "d.tsv"))
    assert info == {"kind": "TSV", "examples": 7, "fields": {"text": ["sentence"], "image": None, "label": "label"},
                    "classes": {"a": 4, "b": 3}, "first": {"text": "word 0", "label": "b"}}
    info = describe(load_dataset(tmp_path / "d.tsv", text_field="sentence", label_field="nope"))
    assert info["classes"] is None and "has no 'nope' field" in info["unlabelled"]
    for c, n in (("cat", 2), ("dog", 1)):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (5, 4)).save(tmp_path / "img" / c / f"{i}.png")
    info = describe(load_dataset(tmp_path / "img"))
    assert info["kind"] == "image folder" and info["classes"] == {"cat": 2, "dog": 1}
    assert info["first"] == {"image": "5×4 RGB image", "label": "cat"}
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 4, 4)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 2, 2, 1, 2]))
    assert describe(load_dataset(tmp_path))["classes"] == {"0": 1, "1": 1, "2": 3}
    (tmp_path / "t.txt.gz").write_bytes(gzip.compress(b"x" * 400 + b"\n"))
    info = describe(load_dataset(tmp_path / "t.txt.gz"))
    assert info["kind"] == "text, an example per line (gzip)" and info["first"]["text"] == "x" * 300 + "…" and info["classes"] is None


def test_16_bit_grey_images_keep_their_shades(tmp_path):
    """A 16-bit PNG (medical and satellite images) is scaled to 8 bits, not clipped to white as
    PIL's convert("RGB") alone does."""
    ramp = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    (tmp_path / "scans" / "a").mkdir(parents=True)
    Image.fromarray(ramp).save(tmp_path / "scans" / "a" / "0.png")
    Image.fromarray(ramp.astype(np.int32)).save(tmp_path / "scans" / "a" / "1.tiff")  # 32-bit integer grey ("I")
    ds = load_dataset(tmp_path / "scans")
    for i in range(2):
        image = np.asarray(ds[i]["image"])
        assert image.shape == (8, 8, 3) and (image[..., 0] == image[..., 2]).all()
        assert np.abs(image[..., 0].astype(int) - ramp.astype(int) / 257).max() <= 0.5  # 0 → 0, 65535 → 255, all between
