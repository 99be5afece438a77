"""Datasets for distillation and fine-tuning: text files, records, image folders, Fashion-MNIST.

A dataset yields raw examples (``{"text": str}``, optionally ``"text_pair"``; ``{"image": PIL.Image}``,
optionally with a caption; optionally ``"label"``);
`Collator` turns a list of them into model inputs with the model's *own* preprocessing: its tokenizer
for text, timm's data config or the Hugging Face image processor for images. Files are read lazily
where they are large (text by byte offsets, images one file at a time, idx files memory-mapped).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .errors import PelaError

TEXT_SUFFIXES = (".txt", ".text", "")  # no suffix: plain text files like Debian's fortunes
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class TextLines(Dataset):
    """One example per non-empty line; an index of byte offsets keeps the file on disk."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            if b"\0" in f.read(8192):
                raise PelaError(f"{path} is not a text file (it holds NUL bytes); text data is one example per line")
        self.offsets: list[int] = []
        with open(path, "rb") as f:
            pos = 0
            for line in f:
                if line.strip():
                    self.offsets.append(pos)
                pos += len(line)

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def lengths(self) -> list[int]:
        """Bytes per example (line), a cheap proxy for token count when grouping batches by length."""
        ends = self.offsets[1:] + [self.path.stat().st_size]
        return [e - o for o, e in zip(self.offsets, ends)]

    def __getitem__(self, i: int) -> dict[str, Any]:
        with open(self.path, "rb") as f:
            f.seek(self.offsets[i])
            return {"text": f.readline().decode("utf-8", errors="replace").strip()}


# a record holds its image in one of these fields: a file path (Hugging Face's imagefolder metadata
# says file_name), or, in Parquet, the encoded image itself ({"bytes": ..., "path": ...}; CIFAR's is img)
IMAGE_FIELDS = ("image", "img", "file_name", "image_path", "filepath", "path")


def _is_image(value: Any) -> bool:
    if isinstance(value, dict):
        return isinstance(value.get("bytes"), (bytes, bytearray)) or _is_image(value.get("path"))
    return isinstance(value, str) and Path(value).suffix.lower() in IMAGE_SUFFIXES


def _open_image(path: Path, data: bytes | None = None) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise PelaError(f"cannot read image {path}: {e}") from None


class Records(Dataset):
    """Rows of a JSONL, JSON, CSV or TSV file: text (one field, or two for sentence pairs), or an image
    path (relative to the file) with or without a caption, and an optional label."""

    def __init__(self, rows: list[dict[str, Any]], text_fields: tuple[str, ...], label_field: str, labels: list[str] | None,
                 image_field: str | None = None, root: Path | None = None):
        self.rows, self.text_fields, self.label_field = rows, text_fields, label_field
        self.image_field, self.root = image_field, root or Path(".")
        self.classes = labels
        self._index = None if labels is None else {c: i for i, c in enumerate(labels)}  # not list.index per item

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> list[int] | None:
        if self.image_field is not None or not self.text_fields:
            return None
        return [sum(len(str(r[f])) for f in self.text_fields) for r in self.rows]

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        item: dict[str, Any] = {}
        if self.image_field is not None:
            image = row[self.image_field]
            if isinstance(image, dict):  # Parquet: the encoded image, else its path
                item["image"] = _open_image(self.root / str(image.get("path") or f"record {i}"), image.get("bytes"))
            else:
                item["image"] = _open_image(self.root / image)
        if self.text_fields:
            item["text"] = str(row[self.text_fields[0]])
        if len(self.text_fields) == 2:
            item["text_pair"] = str(row[self.text_fields[1]])
        if self._index is not None:
            item["label"] = self._index[str(row[self.label_field])]
        return item


def _sorted_labels(labels: set[str]) -> list[str]:
    """Class names in order; integers by value, so class 10 comes after class 9, not after class 1."""
    numeric = all(re.fullmatch(r"-?\d+", x) for x in labels)
    return sorted(labels, key=int) if numeric else sorted(labels)


def _read_rows(path: Path) -> list[Any]:
    """The records of a JSONL, JSON (a list of objects), CSV or TSV file. A byte-order mark is ignored."""
    try:
        if path.suffix == ".jsonl":
            rows = []
            for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise PelaError(f"{path}:{n} is not valid JSON: {e.msg}") from None
            return rows
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8-sig"))
            except json.JSONDecodeError as e:
                raise PelaError(f"{path} is not valid JSON: {e.msg} (line {e.lineno})") from None
            if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
                data = next(iter(data.values()))  # {"data": [...]}, as many exports wrap their records
            if not isinstance(data, list):
                raise PelaError(f"{path} must hold a list of records (or JSONL: one record per line)")
            return data
        # tab-separated files (GLUE's) do not quote: a " is part of the text
        dialect: dict[str, Any] = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if path.suffix == ".tsv" else {}
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = f.readline()
            if path.suffix == ".csv" and "," not in header and ";" in header:
                dialect = dict(delimiter=";")  # what spreadsheets write where the comma is the decimal mark
            f.seek(0)
            return list(csv.DictReader(f, **dialect))
    except UnicodeDecodeError:
        raise PelaError(f"{path} is not UTF-8 text") from None


def _class_label_names(metadata: dict[bytes, bytes] | None) -> dict[str, list[str]]:
    """Class names per column, from the Hugging Face datasets description a Parquet file carries."""
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
        return {k: [str(n) for n in v["names"]] for k, v in features.items()
                if isinstance(v, dict) and v.get("_type") == "ClassLabel" and v.get("names")}
    except (TypeError, KeyError, ValueError):
        return {}


def _read_parquet(files: list[Path]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The rows of Parquet files (one split of a Hugging Face dataset, say) and their class names."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise PelaError("reading Parquet needs pyarrow: pip install 'pela[data]' (or pip install pyarrow)") from None
    rows: list[dict[str, Any]] = []
    names: dict[str, list[str]] = {}
    for f in files:
        try:
            table = pq.read_table(f)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds for a broken file
            raise PelaError(f"{f} is not a readable Parquet file: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        rows.extend(table.to_pylist())
        names = names or _class_label_names(table.schema.metadata)
    return rows, names


def _parquet_files(path: Path) -> list[Path]:
    """A Parquet file, or those of a dataset repository: at most three levels down (default/train/0000.parquet)."""
    if not path.is_dir():
        return [path] if path.suffix == ".parquet" else []
    return sorted(f for depth in ("", "*/", "*/*/") for f in path.glob(depth + "*.parquet"))


def _parquet_split(root: Path, files: list[Path], split: str) -> list[Path]:
    """The files of one split: train-00000-of-00001.parquet, validation-*.parquet, train/0000.parquet, ..."""
    known = {name for names in SPLIT_FOLDERS.values() for name in names}

    def split_of(f: Path) -> str | None:
        head = re.split(r"[-_.]", f.name, maxsplit=1)[0].lower()
        return head if head in known else (f.parent.name.lower() if f.parent.name.lower() in known else None)

    tagged = {f: split_of(f) for f in files}
    if not any(tagged.values()):
        return files  # one split only
    for name in SPLIT_FOLDERS.get(split, (split,)):
        chosen = [f for f, s in tagged.items() if s == name]
        if chosen:
            return chosen
    raise PelaError(f"{root} holds the Parquet splits {', '.join(sorted({s for s in tagged.values() if s}))} but no {split} split "
                    f"({' or '.join(SPLIT_FOLDERS.get(split, (split,)))})")


def _read_records(path: Path, text_field: str, label_field: str, classes: list[str] | None = None,
                  rows: list[Any] | None = None, label_names: list[str] | None = None) -> Records:
    """Records of ``path`` (or the given ``rows``); ``label_names``: the dataset's own names for
    integer labels, in index order (Hugging Face's ClassLabel), where -1 means unlabelled."""
    rows = _read_rows(path) if rows is None else rows
    if not rows:
        raise PelaError(f"dataset {path} is empty")
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise PelaError(f"{path}: record {n} is not an object with named fields")
    text_fields = tuple(f.strip() for f in text_field.split(",") if f.strip())
    if not 1 <= len(text_fields) <= 2:
        raise PelaError(f"--text-field names one field, or two separated by a comma for sentence pairs; got {text_field!r}")
    # a field is an image path only if it names an image file: a "path" column of a text corpus is not
    image_field = next((f for f in IMAGE_FIELDS if _is_image(rows[0].get(f))), None)
    if image_field is not None and not all(f in rows[0] for f in text_fields):
        text_fields = ()  # images with labels, no caption
    for n, row in enumerate(rows, 1):
        for field in (image_field,) if image_field else text_fields:
            if field not in row:
                raise PelaError(f"{path}: record {n} has no {field!r} field" + ("" if image_field else " (use --text-field)"))
        for field in text_fields if image_field else ():
            if field not in row:
                raise PelaError(f"{path}: record {n} has no {field!r} field while others do")
    if label_names:  # integer labels with names: the names are the classes, in the dataset's own order
        rows = [{**r, label_field: label_names[r[label_field]]} if isinstance(r.get(label_field), int) and 0 <= r[label_field] < len(label_names)
                else {**r, label_field: None} if r.get(label_field) == -1 else r for r in rows]
    nested = next((n for n, r in enumerate(rows, 1) if isinstance(r.get(label_field), (list, dict))), None)
    if nested is not None:
        raise PelaError(f"{path}: record {nested} has a list of labels; pela fine-tunes single-label classifiers "
                        "(use --label-field to pick a column with one class per record)")
    has_labels = [label_field in r and r[label_field] not in (None, "") for r in rows]
    if any(has_labels) and not all(has_labels):
        missing = has_labels.index(False) + 1
        raise PelaError(f"{path}: record {missing} has no {label_field!r} while others do")
    labels = (list(label_names) if label_names else _sorted_labels({str(r[label_field]) for r in rows})) if all(has_labels) else None
    fractional = next((x for x in labels or () if re.fullmatch(r"-?\d*\.\d+(e-?\d+)?", x) and float(x) != int(float(x))), None)
    if fractional is not None:  # STS-B's similarity scores, say: each distinct value would become a class
        raise PelaError(f"{path}: label {fractional!r} is a fractional number; pela fine-tunes classifiers, "
                        f"not regression (use --label-field to pick a column of classes)")
    if labels is not None and classes is not None:
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise PelaError(f"{path}: label {unknown[0]!r} is not one of the {len(classes)} classes the model was trained on")
        labels = list(classes)
    return Records(rows, text_fields, label_field, labels, image_field=image_field, root=path.parent)


class ImageFolder(Dataset):
    """Images in class sub-folders (labelled) or directly in the folder (unlabelled)."""

    def __init__(self, root: Path, classes: list[str] | None = None):
        subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if subdirs:
            self.classes: list[str] | None = list(classes) if classes is not None else [d.name for d in subdirs]
            unknown = [d.name for d in subdirs if d.name not in self.classes]
            if unknown:
                raise PelaError(f"{root}: class folder {unknown[0]!r} is not one of the {len(self.classes)} classes the model was trained on")
            index = {c: i for i, c in enumerate(self.classes)}
            self.items = [(p, index[d.name]) for d in subdirs for p in sorted(d.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
        else:
            self.classes = None
            self.items = [(p, None) for p in sorted(root.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path, label = self.items[i]
        image = _open_image(path)
        return {"image": image} if label is None else {"image": image, "label": label}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise PelaError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise PelaError(f"{path} is truncated: header says {shape}, found {body.size} values")
    return body.reshape(shape)


class IdxImages(Dataset):
    """Fashion-MNIST / MNIST idx files: ``*-images-idx3-ubyte[.gz]`` with ``*-labels-idx1-ubyte[.gz]``."""

    def __init__(self, images: Path, labels: Path | None, classes: list[str] | None = None):
        self.images = _read_idx(images)
        self.labels = None if labels is None else _read_idx(labels)
        if self.labels is not None and len(self.labels) != len(self.images):
            raise PelaError(f"{images} has {len(self.images)} images but {labels} has {len(self.labels)} labels")
        self.classes = None if self.labels is None else (list(classes) if classes is not None else [str(c) for c in range(int(self.labels.max()) + 1)])
        if self.classes is not None and int(self.labels.max()) >= len(self.classes):
            raise PelaError(f"{labels} has label {int(self.labels.max())}, but the model knows {len(self.classes)} classes")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from PIL import Image

        item: dict[str, Any] = {"image": Image.fromarray(self.images[i]).convert("RGB")}
        if self.labels is not None:
            item["label"] = int(self.labels[i])
        return item


def _find_idx(root: Path, split: str) -> tuple[Path, Path | None] | None:
    for prefix in (split, "t10k" if split == "test" else split):
        for suffix in ("", ".gz"):
            images = root / f"{prefix}-images-idx3-ubyte{suffix}"
            if images.is_file():
                labels = root / f"{prefix}-labels-idx1-ubyte{suffix}"
                return images, labels if labels.is_file() else None
    return None


# folder names that mean a split, not a class: ImageNet-style data is root/train/<class>/..., root/val/<class>/...
SPLIT_FOLDERS = {"train": ("train", "training"), "test": ("validation", "val", "valid", "dev", "test", "eval")}


def _split_folder(root: Path, split: str) -> Path | None:
    """``root/<split>`` when every sub-folder of ``root`` is a split (train, val, test, ...), else None."""
    subdirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    known = {name for names in SPLIT_FOLDERS.values() for name in names}
    if not subdirs or not set(subdirs) <= known:
        return None
    for name in SPLIT_FOLDERS.get(split, (split,)):
        if name in subdirs:
            return subdirs[name]
    raise PelaError(f"{root} holds the splits {', '.join(sorted(subdirs))} but no {split} split "
                    f"({' or '.join(SPLIT_FOLDERS.get(split, (split,)))}); pass the split's folder itself")


def load_dataset(path: str | os.PathLike, *, split: str = "train", text_field: str = "text", label_field: str = "label",
                 classes: list[str] | None = None) -> Dataset:
    """Open a dataset by path; raises `PelaError` if it is missing, unreadable or empty.

    * ``*.txt``: one text per line (unlabelled).
    * ``*.jsonl`` / ``*.json`` / ``*.csv`` / ``*.tsv`` / ``*.parquet``: records with ``text_field``
      (``"a,b"``: a sentence pair) and optionally ``label_field`` (classes in sorted order, integers
      by value, or as a Parquet file's Hugging Face ClassLabel names them); records that hold an image
      (a field in `IMAGE_FIELDS`: a path, or Parquet's encoded bytes) are images, with their caption
      if they have ``text_field``.
    * a directory of Parquet files (a Hugging Face dataset repository): ``split`` picks the files.
    * a directory of ``*-images-idx3-ubyte[.gz]`` files (Fashion-MNIST): ``split`` picks train/t10k.
    * any other directory: an image folder (class sub-folders, or flat and unlabelled, or with a
      ``metadata.jsonl``/``metadata.csv`` naming each ``file_name``'s label or caption, as Hugging
      Face's imagefolder has it); a folder whose sub-folders are splits (train, val, test, ...) is
      read at ``split`` (test: validation, val, ... or test).

    ``classes`` fixes the label → index mapping (the one a model was fine-tuned with), so an
    evaluation set that lacks some classes still lines up; otherwise classes are sorted names.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise PelaError(f"dataset {p} does not exist")
    if not os.access(p, os.R_OK):
        raise PelaError(f"dataset {p} is not readable (permission denied)")
    parquet = _parquet_files(p)
    if parquet:  # a Parquet file, or a dataset repository's files (data/train-00000-of-00001.parquet, ...)
        files = _parquet_split(p, parquet, split) if p.is_dir() else parquet
        rows, names = _read_parquet(files)
        ds: Dataset = _read_records(files[0], text_field, label_field, classes, rows=rows, label_names=names.get(label_field))
    elif p.is_dir():
        idx = _find_idx(p, split)
        folder = _split_folder(p, split) or p
        # Hugging Face's imagefolder: a metadata file names each image's label or caption
        meta = next((folder / f"metadata{ext}" for ext in (".jsonl", ".csv") if (folder / f"metadata{ext}").is_file()), None)
        if idx:
            ds = IdxImages(*idx, classes=classes)
        elif meta:
            ds = _read_records(meta, text_field, label_field, classes)
        else:
            ds = ImageFolder(folder, classes)
    elif p.suffix in (".jsonl", ".json", ".csv", ".tsv"):
        ds = _read_records(p, text_field, label_field, classes)
    elif p.suffix.lower() in TEXT_SUFFIXES:
        ds = TextLines(p)
    else:
        raise PelaError(f"cannot read dataset {p}: {p.suffix!r} is not a known format (text: {', '.join(s or 'no suffix' for s in TEXT_SUFFIXES)}; "
                        "records: .jsonl, .json, .csv, .tsv, .parquet; images: a folder; Fashion-MNIST: a folder of idx files)")
    if len(ds) == 0:
        raise PelaError(f"dataset {p} is empty")
    return ds


def dataset_classes(ds: Dataset) -> list[str] | None:
    return getattr(ds, "classes", None)


class _Relabelled(Dataset):
    """A labelled dataset with its labels renumbered to another order of classes (a model's own)."""

    def __init__(self, data: Dataset, index: list[int], classes: list[str]):
        self.data, self.index, self.classes = data, index, classes

    def __len__(self) -> int:
        return len(self.data)

    @property
    def lengths(self) -> list[int] | None:
        return getattr(self.data, "lengths", None)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.data[i]
        for key in ("label", "labels"):  # pela's datasets say label; a collated one may say labels
            if key in item:
                value = item[key]
                new = self.index[int(value)]
                return {**item, key: torch.tensor(new) if torch.is_tensor(value) else new}
        return item


def align_classes(data: Dataset, names: list[str] | None, *, subset: bool = False) -> Dataset:
    """``data`` labelled in the order of ``names`` (the classes a model names, `pela.arch.class_names`)
    when it has exactly those classes, or with ``subset`` some of them; otherwise ``data`` as it is.

    A dataset numbers its classes in sorted order; a model fine-tuned elsewhere may order the same
    names differently (``id2label = {0: "positive", 1: "negative"}``), and comparing indices would
    then score a perfect classifier at 0%.
    """
    classes = dataset_classes(data)
    if not classes or not names or list(classes) == list(names) or len(set(names)) != len(names):
        return data
    if not (set(classes) == set(names) or (subset and set(classes) <= set(names))):
        return data
    position = {c: i for i, c in enumerate(names)}
    return _Relabelled(data, [position[c] for c in classes], list(names))


def _timm_data_config(model: nn.Module) -> dict[str, Any] | None:
    """timm's evaluation preprocessing for a timm model (None for any other model)."""
    cfg = getattr(model, "pretrained_cfg", None)
    if not (isinstance(cfg, dict) and "input_size" in cfg):
        return None
    from timm.data import resolve_model_data_config

    from .arch import built_image_size

    data_cfg = dict(resolve_model_data_config(model))
    size = built_image_size(model)
    if size and tuple(size) != tuple(data_cfg["input_size"][1:]):  # built with img_size=...: the pretrained size no longer applies
        data_cfg["input_size"] = (data_cfg["input_size"][0], *size)
        data_cfg["crop_pct"] = 1.0
    return data_cfg


class _HFImageTransform:
    """A Hugging Face image processor as a one-image transform (a class, not a lambda, so it pickles)."""

    def __init__(self, processor: Any):
        self.processor = processor

    def __call__(self, image: Any) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


class Collator:
    """Turns raw examples into a batch of model inputs, with the model's own preprocessing.

    Text goes through the tokenizer saved with the model (truncated to ``max_length``, default the
    model's maximum); images through timm's data config (timm models) or the Hugging Face image
    processor (Hugging Face models).
    """

    def __init__(self, model: nn.Module, max_length: int | None = None, tokenizer: Any = None, image_transform: Any = None):
        from .arch import max_positions

        self.positions = max_positions(model)
        if max_length is not None and self.positions is not None and max_length > self.positions:
            raise PelaError(f"--max-length {max_length} is more than this model takes: at most {self.positions} positions")
        self.max_length = max_length
        self._tokenizer, self._transform = tokenizer, image_transform
        # what preprocessing needs of the model, kept instead of the model itself, so that DataLoader
        # workers started by spawn or forkserver receive a small picklable object
        self.files = getattr(model, "pela_files", None)
        self.timm_data_config = _timm_data_config(model)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            if not self.files:
                raise PelaError("text data needs a tokenizer, and this model has none saved alongside it")
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.files)
            except Exception as e:
                raise PelaError(f"cannot load the tokenizer saved in {self.files}: {str(e).splitlines()[0]}") from None
        return self._tokenizer

    @property
    def transform(self) -> Any:
        if self._transform is None:
            if self.timm_data_config is not None:
                from timm.data import create_transform

                self._transform = create_transform(**self.timm_data_config)
            else:
                from transformers import AutoImageProcessor

                try:
                    processor = AutoImageProcessor.from_pretrained(self.files)
                except Exception:
                    raise PelaError("image data needs an image processor saved with the model (preprocessor_config.json)") from None
                self._transform = _HFImageTransform(processor)
        return self._transform

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        if "text" in examples[0]:
            limit = self.max_length or min(getattr(self.tokenizer, "model_max_length", 512), self.positions or 4096, 4096)
            pairs = [e["text_pair"] for e in examples] if "text_pair" in examples[0] else None
            enc = self.tokenizer([e["text"] for e in examples], pairs, padding=True, truncation=True, max_length=limit, return_tensors="pt")
            batch.update(enc)
        if "image" in examples[0]:
            batch["pixel_values"] = torch.stack([self.transform(e["image"]) for e in examples])
        if "label" in examples[0]:
            batch["labels"] = torch.tensor([e["label"] for e in examples])
        return batch
