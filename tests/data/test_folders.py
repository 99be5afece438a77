"""Folders of data: classes as sub-folders, text files, images, split folders, metadata."""

import json

import numpy as np
import pytest
from conftest import timm_vit
from PIL import Image

from pela import PelaError
from pela.data.collate import Collator
from pela.data.load import describe, load_dataset


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
