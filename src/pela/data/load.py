"""`load_dataset`: any supported data path to a dataset of raw examples; `describe` says what was
read."""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from pela.data.cache import data_format, gzipped
from pela.data.folders import (
    FOLDER_SUFFIXES,
    TEXT_SUFFIXES,
    FolderDataset,
    IdxImages,
    TextLines,
    find_idx,
    split_folder,
)
from pela.data.json_rows import read_rows
from pela.data.labels import dataset_classes, unlabelled_reason
from pela.data.lines import LineRows
from pela.data.records import Records, default_label_field, read_records, record_files
from pela.data.tables import ChainRows, TableRows, read_tables, table_files, table_split
from pela.errors import PelaError


def load_dataset(path: str | os.PathLike, *, split: str = "train", text_field: str | None = None,
                 label_field: str | None = None, classes: list[str] | None = None,
                 progress: bool = False) -> Dataset:
    """Open a dataset by path; raises `PelaError` if it is missing, unreadable or empty.
    ``progress`` shows bars on stderr while a large file is indexed and its records checked.

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
    fields = {"text_field": text_field, "label_field": label_field, "classes": classes,
              "progress": progress}
    tables = table_files(p)
    # a Parquet or Arrow file, or a Hugging Face dataset's (data/train-00000-of-00001.parquet, ...)
    if tables:
        ds = _tables(p, tables, split, **fields)
    elif p.is_dir():
        ds = _folder(p, split, **fields)
    elif data_format(p) in (".jsonl", ".json", ".csv", ".tsv"):
        ds = read_records(p, text_field, label_field, classes, progress=progress)
    elif data_format(p) in TEXT_SUFFIXES:
        ds = TextLines(p, progress)
    else:
        texts = ", ".join(s or "no suffix" for s in TEXT_SUFFIXES)
        raise PelaError(f"cannot read dataset {p}: {data_format(p)!r} is not a known format "
                        f"(text: {texts}; records: .jsonl, .json, .csv, .tsv, .parquet, .arrow; "
                        "images: a folder; Fashion-MNIST: a folder of idx files)")
    return _nonempty(ds, p)


def _tables(p: Path, tables: list[Path], split: str, text_field: str | None,
            label_field: str | None, classes: list[str] | None, progress: bool) -> Dataset:
    """Records of Parquet or Arrow files (a directory's: those of ``split``)."""
    files = table_split(p, tables, split) if p.is_dir() else tables
    rows, names = read_tables(files, progress)
    if label_field is None:
        label_field = default_label_field(rows[0] if len(rows) else {}, list(names))
    return read_records(files[0], text_field, label_field, classes, rows=rows,
                        label_names=names.get(label_field), progress=progress)


def _folder(p: Path, split: str, text_field: str | None, label_field: str | None,
            classes: list[str] | None, progress: bool) -> Dataset:
    """A directory: idx files, an image folder with its metadata, shards of records, or a folder
    of images or .txt files (its ``split`` sub-folder where it has splits)."""
    idx = find_idx(p, split)
    folder = split_folder(p, split) or p
    # Hugging Face's imagefolder: a metadata file names each image's label or caption
    metas = (folder / f"metadata{ext}" for ext in (".jsonl", ".csv"))
    meta = next((f for f in metas if f.is_file()), None)
    if idx:
        return IdxImages(*idx, classes=classes)
    if meta:
        return read_records(meta, text_field, label_field, classes, progress=progress)
    if not _holds_examples(folder) and (shards := record_files(folder)):
        # shards of records (C4's c4-train.00000-of-01024.json.gz, ...), a split picked by name
        # as for Parquet
        files = table_split(folder, shards, split)
        rows = ChainRows([read_rows(f, progress) for f in files])
        return read_records(files[0], text_field, label_field, classes, rows=rows,
                            progress=progress)
    return FolderDataset(folder, classes)


def _holds_examples(folder: Path) -> bool:
    """Whether ``folder`` holds the images or .txt files of a folder dataset (it stops at the
    first)."""
    return any(f.suffix.lower() in FOLDER_SUFFIXES for f in folder.rglob("*"))


def _nonempty(ds: Dataset, p: Path) -> Dataset:
    if len(ds) == 0:
        raise PelaError(f"dataset {p} is empty")
    return ds


def describe(ds: Dataset) -> dict[str, Any]:
    """What pela reads from ``ds``: its kind, its number of examples, the fields it uses, its
    classes with their number of examples, and its first example (text cut at 300 characters)."""
    info: dict[str, Any] = {"kind": _kind(ds), "examples": len(ds)}
    if isinstance(ds, Records):
        label = ds.label_field if ds.classes else None
        info["fields"] = {"text": list(ds.text_fields), "image": ds.image_field, "label": label}
    counts = _counts(ds)
    classes = dataset_classes(ds)
    info["classes"] = {c: counts.get(c, 0) for c in classes} if classes else None
    if not classes:
        info["unlabelled"] = unlabelled_reason(ds)
    first = ds[0]
    if classes and "label" in first:
        first["label"] = classes[first["label"]]  # its name, not its index
    info["first"] = {k: _shown(v) for k, v in first.items()}
    return info


def _kind(ds: Dataset) -> str:
    if isinstance(ds, TextLines):
        kind = "fortune records" if ds.separated else "text, an example per line"
        return kind + (" (gzip)" if gzipped(ds.path) else "")
    if isinstance(ds, Records):
        files = ds.rows.parts if isinstance(ds.rows, ChainRows) else [ds.rows]
        rows = files[0] if files else ds.rows
        kind = ("Parquet or Arrow table" if isinstance(rows, TableRows) else
                RECORD_KINDS[rows.fmt] if isinstance(rows, LineRows) else "JSON list")
        kind += f", {len(files)} files" if len(files) > 1 else ""
        if getattr(rows, "headerless", False):
            kind += ", no header row (columns named by position)"
        return kind
    if isinstance(ds, FolderDataset):
        return "folder of text files" if ds.text else "image folder"
    if isinstance(ds, IdxImages):
        return "idx images (MNIST, Fashion-MNIST)"
    return type(ds).__name__


RECORD_KINDS = {".jsonl": "JSON lines", ".json": "JSON list", ".csv": "CSV", ".tsv": "TSV"}


def _counts(ds: Dataset) -> dict[str, int]:
    """Examples per class name, where the dataset knows them without reading every example."""
    if isinstance(ds, Records):
        return ds.counts
    if isinstance(ds, FolderDataset) and ds.classes:
        return collections.Counter(ds.classes[label] for _, label in ds.items)
    if isinstance(ds, IdxImages) and ds.classes:
        per_class = np.bincount(ds.labels, minlength=len(ds.classes)).tolist()
        return dict(zip(ds.classes, per_class))
    return {}


def _shown(value: Any) -> Any:
    """A field of the first example as ``pela data`` prints it."""
    if isinstance(value, str):
        return value[:300] + ("…" if len(value) > 300 else "")
    if hasattr(value, "mode"):  # an image
        return f"{value.width}×{value.height} {value.mode} image"
    return value
