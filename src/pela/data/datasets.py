"""Datasets for distillation and fine-tuning: text files, records, folders of images or text files, Fashion-MNIST.

A dataset yields raw examples (``{"text": str}``, optionally ``"text_pair"``; ``{"image": PIL.Image}``,
optionally with a caption; optionally ``"label"``);
`Collator` turns a list of them into model inputs with the model's *own* preprocessing: its tokenizer
for text, timm's data config or the Hugging Face image processor for images. Examples are read when
used: text and records by byte offsets (`records.ByteRanges`), Parquet and Arrow rows from Arrow's
columns, images one file at a time.
"""

from __future__ import annotations

import collections
import gzip
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from pela.errors import PelaError
from pela.data.records import IMAGE_SUFFIXES, SPLIT_FOLDERS, ByteRanges, ChainRows, data_format, default_label_field, gzipped, open_image, read_records, read_rows, read_tables, record_files, table_files, table_split

TEXT_SUFFIXES = (".txt", ".text", "")  # no suffix: plain text files like Debian's fortunes
FOLDER_SUFFIXES = frozenset(IMAGE_SUFFIXES) | {".txt"}  # the files a folder dataset reads


class TextLines(ByteRanges, Dataset):
    """One example per non-empty line; an index of byte offsets keeps the file on disk (`ByteRanges`).

    A file in fortune's format (``strfile``: records of one or more lines, separated by lines
    holding only ``%``) gives one example per record instead, lines joined.
    """

    def __init__(self, path: Path, progress: bool = False):
        super().__init__(path, progress)
        with self._open() as f:
            head = f.read(1 << 20)
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # pickle's protocol header
            raise PelaError(f"{path} is a Python pickle (CIFAR's batches are): pela never unpickles data, which can run code; "
                            "use the dataset as Parquet or an image folder")
        if b"\0" in head[:8192]:
            raise PelaError(f"{path} is not a text file (it holds NUL bytes); text data is one example per line")
        # fortune's format shows in the first MiB: a separator every few lines (at most 15 in Debian's
        # fortunes), not a stray % line in a corpus
        lines = head.split(b"\n")
        separators = sum(line.rstrip(b"\r") == b"%" for line in lines)
        self.separated = separators >= 2 and sum(bool(line.strip()) for line in lines) <= 50 * separators
        with self._open() as f:
            if not self.separated:
                self._index_lines(self._lines(f, progress), 0)
                return
            pos = begin = 0
            content = False
            for line in self._lines(f, progress):
                if line.rstrip(b"\r\n") == b"%":
                    if content:
                        self.starts.append(begin)
                        self.ends.append(pos)
                    begin, content = pos + len(line), False
                else:
                    content = content or bool(line.strip())
                pos += len(line)
            if content:
                self.starts.append(begin)
                self.ends.append(pos)

    @property
    def lengths(self) -> list[int]:
        """Bytes per example, a cheap proxy for token count when grouping batches by length."""
        return [e - s for s, e in zip(self.starts, self.ends)]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"text": self._read(self.starts[i], self.ends[i]).decode("utf-8", errors="replace").strip()}


class FolderDataset(Dataset):
    """Files in class sub-folders (labelled) or directly in the folder (unlabelled): images, or, in a
    folder with none, ``.txt`` files, one example each (as Keras's ``text_dataset_from_directory``),
    or, in class sub-folders with neither, the files with no suffix (as 20 Newsgroups has them)."""

    def __init__(self, root: Path, classes: list[str] | None = None):
        subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if subdirs:
            self.classes: list[str] | None = list(classes) if classes is not None else [d.name for d in subdirs]
            unknown = [d.name for d in subdirs if d.name not in self.classes]
            if unknown:
                raise PelaError(f"{root}: class folder {unknown[0]!r} is not one of the {len(self.classes)} classes the model was trained on")
            index = {c: i for i, c in enumerate(self.classes)}
            # by name only: a stat per file would add seconds on an ImageNet-sized tree
            found = [(p, index[d.name]) for d in subdirs for p in sorted(d.rglob("*"))]
            files = [(p, label) for p, label in found if p.suffix.lower() in FOLDER_SUFFIXES]
        else:
            self.classes = None
            files = [(p, None) for p in sorted(root.iterdir()) if p.suffix.lower() in FOLDER_SUFFIXES]
        self.items = [(p, label) for p, label in files if p.suffix.lower() in IMAGE_SUFFIXES]
        self.text = not self.items
        if self.text:
            self.items = [(p, label) for p, label in files if p.suffix.lower() == ".txt"]
        if not self.items and subdirs:  # hidden files (.DS_Store) are no documents; folders have no suffix either
            self.items = [(p, label) for p, label in found if not p.suffix and not p.name.startswith(".") and p.is_file()]
        if not self.items:
            raise PelaError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) or .txt files"
                            + (" (or files with no suffix) in its class sub-folders" if subdirs else "")
                            + "; to read one text file, pass the file itself")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> list[int] | None:
        return [p.stat().st_size for p, _ in self.items] if self.text else None

    def __getitem__(self, i: int) -> dict[str, Any]:
        path, label = self.items[i]
        item: dict[str, Any] = {"text": path.read_text(errors="replace").strip()} if self.text else {"image": open_image(path)}
        return item if label is None else {**item, "label": label}


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


def load_dataset(path: str | os.PathLike, *, split: str = "train", text_field: str | None = None, label_field: str | None = None,
                 classes: list[str] | None = None, progress: bool = False) -> Dataset:
    """Open a dataset by path; raises `PelaError` if it is missing, unreadable or empty. ``progress``
    shows bars on stderr while a large file is indexed and its records checked.

    * ``*.txt`` (or no suffix): one text per line (unlabelled); in fortune's format (records
      separated by lines holding only ``%``), one per record.
    * any of the files below or above gzip-compressed (``train.jsonl.gz``, ``corpus.txt.gz``).
    * ``*.jsonl`` / ``*.json`` / ``*.csv`` / ``*.tsv`` / ``*.parquet`` / ``*.arrow``: records with
      ``text_field`` (``"a,b"``: a sentence pair; None: ``text``, or the records' only field of
      text) and optionally ``label_field`` (None: `records.default_label_field`; classes in sorted
      order, integers by value, or as a Hugging Face dataset's ClassLabel names them); records that
      hold an image (a field in `IMAGE_FIELDS`: a path, or the encoded bytes) are images, with their
      caption if they have ``text_field``. A CSV/TSV file whose first row holds a number has no
      header row: its columns are named by position, ``"0"``, ``"1"``, ...
    * a directory of Parquet or Arrow files (a Hugging Face dataset repository, ``save_to_disk``'s
      folder, or the datasets cache): ``split`` picks the files.
    * a directory of ``*-images-idx3-ubyte[.gz]`` files (Fashion-MNIST): ``split`` picks train/t10k.
    * any other directory: an image folder (class sub-folders, or flat and unlabelled, or with a
      ``metadata.jsonl``/``metadata.csv`` naming each ``file_name``'s label or caption, as Hugging
      Face's imagefolder has it), or, with no images, a folder of ``.txt`` files laid out the same
      way, one example per file; a folder whose sub-folders are splits (train, val, test, ...) is
      read at ``split`` (test: validation, val, ... or test).

    ``classes`` fixes the label → index mapping (the one a model was fine-tuned with), so an
    evaluation set that lacks some classes still lines up; otherwise classes are sorted names.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise PelaError(f"dataset {p} does not exist")
    if not os.access(p, os.R_OK):
        raise PelaError(f"dataset {p} is not readable (permission denied)")
    tables = table_files(p)
    if tables:  # a Parquet or Arrow file, or a Hugging Face dataset's (data/train-00000-of-00001.parquet, ...)
        files = table_split(p, tables, split) if p.is_dir() else tables
        rows, names = read_tables(files, progress)
        if label_field is None:
            label_field = default_label_field(rows[0] if len(rows) else {}, list(names))
        ds: Dataset = read_records(files[0], text_field, label_field, classes, rows=rows, label_names=names.get(label_field),
                                   progress=progress)
        return _nonempty(ds, p)
    if p.is_dir():
        idx = _find_idx(p, split)
        folder = _split_folder(p, split) or p
        # Hugging Face's imagefolder: a metadata file names each image's label or caption
        meta = next((folder / f"metadata{ext}" for ext in (".jsonl", ".csv") if (folder / f"metadata{ext}").is_file()), None)
        if idx:
            ds = IdxImages(*idx, classes=classes)
        elif meta:
            ds = read_records(meta, text_field, label_field, classes, progress=progress)
        elif not _holds_examples(folder) and (shards := record_files(folder)):
            # shards of records (C4's c4-train.00000-of-01024.json.gz, ...), a split picked by name as for Parquet
            files = table_split(folder, shards, split)
            rows = ChainRows([read_rows(f, progress) for f in files])
            ds = read_records(files[0], text_field, label_field, classes, rows=rows, progress=progress)
        else:
            ds = FolderDataset(folder, classes)
    elif data_format(p) in (".jsonl", ".json", ".csv", ".tsv"):
        ds = read_records(p, text_field, label_field, classes, progress=progress)
    elif data_format(p) in TEXT_SUFFIXES:
        ds = TextLines(p, progress)
    else:
        raise PelaError(f"cannot read dataset {p}: {data_format(p)!r} is not a known format (text: {', '.join(s or 'no suffix' for s in TEXT_SUFFIXES)}; "
                        "records: .jsonl, .json, .csv, .tsv, .parquet, .arrow; images: a folder; Fashion-MNIST: a folder of idx files)")
    return _nonempty(ds, p)


def _holds_examples(folder: Path) -> bool:
    """Whether ``folder`` holds the images or .txt files of a folder dataset (it stops at the first)."""
    return any(f.suffix.lower() in FOLDER_SUFFIXES for f in folder.rglob("*"))


def _nonempty(ds: Dataset, p: Path) -> Dataset:
    if len(ds) == 0:
        raise PelaError(f"dataset {p} is empty")
    return ds


def describe(ds: Dataset) -> dict[str, Any]:
    """What pela reads from ``ds``: its kind, its number of examples, the fields it uses, its classes
    with their number of examples, and its first example (text cut at 300 characters)."""
    from pela.data.records import LineRows, Records, TableRows

    info: dict[str, Any] = {"kind": type(ds).__name__, "examples": len(ds)}
    counts: dict[str, int] = {}
    if isinstance(ds, TextLines):
        info["kind"] = ("fortune records" if ds.separated else "text, an example per line") + (" (gzip)" if gzipped(ds.path) else "")
    elif isinstance(ds, Records):
        files = ds.rows.parts if isinstance(ds.rows, ChainRows) else [ds.rows]
        rows = files[0] if files else ds.rows
        info["kind"] = ({".jsonl": "JSON lines", ".json": "JSON list", ".csv": "CSV", ".tsv": "TSV"}[rows.fmt] if isinstance(rows, LineRows)
                        else "Parquet or Arrow table" if isinstance(rows, TableRows) else "JSON list")
        info["kind"] += f", {len(files)} files" if len(files) > 1 else ""
        info["kind"] += ", no header row (columns named by position)" if getattr(rows, "headerless", False) else ""
        info["fields"] = {"text": list(ds.text_fields), "image": ds.image_field, "label": ds.label_field if ds.classes else None}
        counts = ds.counts
    elif isinstance(ds, FolderDataset):
        info["kind"] = "folder of text files" if ds.text else "image folder"
        counts = collections.Counter(ds.classes[label] for _, label in ds.items) if ds.classes else {}
    elif isinstance(ds, IdxImages):
        info["kind"] = "idx images (MNIST, Fashion-MNIST)"
        counts = dict(zip(ds.classes, np.bincount(ds.labels, minlength=len(ds.classes)).tolist())) if ds.classes else {}
    classes = dataset_classes(ds)
    info["classes"] = {c: counts.get(c, 0) for c in classes} if classes else None
    if not classes:
        info["unlabelled"] = unlabelled_reason(ds)
    first = ds[0]
    if classes and "label" in first:
        first["label"] = classes[first["label"]]  # its name, not its index
    info["first"] = {k: (v[:300] + ("…" if len(v) > 300 else "") if isinstance(v, str)
                         else f"{v.width}×{v.height} {v.mode} image" if hasattr(v, "mode") else v) for k, v in first.items()}
    return info


def dataset_classes(ds: Dataset) -> list[str] | None:
    return getattr(ds, "classes", None)


def unlabelled_reason(ds: Dataset) -> str:
    """Why ``ds`` has no labels, for an error where they are needed."""
    return getattr(ds, "unlabelled", None) or ("class sub-folders, idx labels, or a label field; "
                                               f"{type(ds).__name__} data has none")


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

    from pela.arch.core import built_image_size

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
        from pela.arch.core import max_positions

        self.positions = max_positions(model)
        if max_length is not None and self.positions is not None and max_length > self.positions:
            raise PelaError(f"--max-length {max_length} is more than this model takes: at most {self.positions} positions")
        self.max_length = max_length
        self._tokenizer, self._transform = tokenizer, image_transform
        # what preprocessing needs of the model, kept instead of the model itself, so that DataLoader
        # workers started by spawn or forkserver receive a small picklable object
        self.files = getattr(model, "pela_files", None)
        # a model whose own code the user trusted (pela.load_model's trust_remote_code) may bring its
        # tokenizer's code too; for any other, transformers is told no outright instead of asking
        source = getattr(model, "pela_source", None) or getattr(getattr(model, "backbone", None), "pela_source", None) or {}
        self.trust_remote_code = bool(source.get("remote_code"))
        self.timm_data_config = _timm_data_config(model)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            if not self.files:
                raise PelaError("text data needs a tokenizer, and this model has none saved alongside it")
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.files, trust_remote_code=self.trust_remote_code)
            except Exception as e:
                raise PelaError(f"cannot load the tokenizer saved in {self.files}: {str(e).splitlines()[0]}") from None
            # with no tokenizer files, transformers builds one that knows only its special tokens: every word would be [UNK]
            if len(tokenizer) <= len(tokenizer.all_special_tokens):
                raise PelaError(f"text data needs the model's tokenizer, and {self.files} has none (its tokenizer would know only "
                                f"{len(tokenizer)} special tokens); save the one its weights were trained with beside them "
                                "(AutoTokenizer.from_pretrained(ORIGINAL).save_pretrained(DIR))")
            self._tokenizer = tokenizer
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
                    processor = AutoImageProcessor.from_pretrained(self.files, trust_remote_code=self.trust_remote_code)
                except Exception:
                    where = f"{self.files} has no preprocessor_config.json" if self.files else "the model has no files saved alongside it"
                    raise PelaError(f"image data needs the model's image processor, and {where}; save the one its weights were "
                                    "trained with beside them (AutoImageProcessor.from_pretrained(ORIGINAL).save_pretrained(DIR))") from None
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
