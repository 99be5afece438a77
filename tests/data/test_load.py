"""`load_dataset`: one call for every format, errors that name the file and line."""

import gzip
import json

import numpy as np
import pytest
import torch
from conftest import timm_vit
from PIL import Image

from pela import PelaError
from pela.data.collate import Collator
from pela.data.load import describe, load_dataset


def write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


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


def test_fashion_mnist_idx(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.random.randint(0, 255, (5, 28, 28)), gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 9]), gz=True)
    ds = load_dataset(tmp_path)
    assert len(ds) == 5 and ds[4]["label"] == 9 and ds[0]["image"].mode == "RGB"
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1]), gz=True)
    with pytest.raises(PelaError, match="5 images but"):
        load_dataset(tmp_path)


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


def test_describe_says_what_pela_reads(tmp_path):

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
