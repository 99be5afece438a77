"""Records: rows of CSV, TSV, JSON, JSONL, Parquet and Arrow files, as a dataset of text, text pairs
or images.

A record holds its text in named fields (two for sentence pairs), or an image (a file path, or in
Parquet and Arrow the encoded image), and optionally a label. Classes are sorted names (integers by
value), or a Hugging Face dataset's own class names (its ClassLabel).
"""

from __future__ import annotations

import collections
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from torch.utils.data import Dataset

from pela.data.cache import data_format
from pela.data.images import IMAGE_FIELDS, encoded_image, is_image, open_image
from pela.data.json_rows import read_rows
from pela.data.lines import is_number
from pela.data.tables import value
from pela.errors import PelaError
from pela.utils.progress import progress_bar


class Records(Dataset):
    """Rows of a JSONL, JSON, CSV, TSV, Parquet or Arrow file: text (one field, or two for sentence
    pairs), or an image (a path relative to the file, or the encoded bytes) with or without a
    caption, and an optional label. Build it with `read_records`, which checks every row once."""

    def __init__(self, rows: Sequence[dict[str, Any]], text_fields: tuple[str, ...],
                 label_field: str, labels: list[str] | None, image_field: str | None = None,
                 root: Path | None = None, label_names: list[str] | None = None,
                 lengths: Sequence[int] | None = None):
        self.rows, self.text_fields, self.label_field = rows, text_fields, label_field
        self.image_field, self.root = image_field, root or Path(".")
        self.classes = labels
        # the dataset's own names for integer labels (Hugging Face's ClassLabel)
        self.label_names = label_names
        # why there are no labels, for an error where labels are needed
        self.unlabelled: str | None = None
        # not list.index per item
        self._index = None if labels is None else {c: i for i, c in enumerate(labels)}
        self._lengths = lengths
        self.counts: dict[str, int] = {}  # examples per class, as read_records counted them

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> list[int] | None:
        if self.image_field is not None or not self.text_fields or self._lengths is None:
            return None
        return list(self._lengths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        item: dict[str, Any] = {}
        if self.image_field is not None:
            item["image"] = self._image(i, value(row[self.image_field]))
        if self.text_fields:
            item["text"] = str(row[self.text_fields[0]])
        if len(self.text_fields) == 2:
            item["text_pair"] = str(row[self.text_fields[1]])
        if self._index is not None:
            item["label"] = self._index[label_of(row.get(self.label_field), self.label_names)]
        return item

    def _image(self, i: int, image: Any) -> Any:
        if isinstance(image, dict):  # Parquet, Arrow: the encoded image, else its path
            path = self.root / str(image.get("path") or f"record {i}")
            return open_image(path, image.get("bytes"))
        if isinstance(image, (bytes, bytearray)):  # a column of encoded images: webdataset's jpg
            return open_image(self.root / f"record {i}", bytes(image))
        return open_image(self.root / image)


PROGRESS_RECORDS = 250_000  # datasets this long get a progress bar while their records are checked


def label_of(x: Any, names: list[str] | None = None) -> str | None:
    """A row's class name, or None for no label; ``names``: a dataset's names for integer labels,
    where -1 means unlabelled (a Hugging Face test split's)."""
    if names and isinstance(x, int) and not isinstance(x, bool):
        return None if x == -1 else names[x]
    return None if x is None or x == "" else str(x)


def _sorted_labels(labels: set[str]) -> list[str]:
    """Class names in order; integers by value, so class 10 comes after class 9, not after class
    1."""
    numeric = all(re.fullmatch(r"-?\d+", x) for x in labels)
    return sorted(labels, key=int) if numeric else sorted(labels)


RECORD_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")


def record_files(folder: Path) -> list[Path]:
    """The record files of a folder of shards (C4's c4-train.00000-of-01024.json.gz, say), at most
    three levels down, gzipped or not, all of one format; an image folder's metadata file is not
    one."""
    found = (f for depth in ("", "*/", "*/*/") for f in folder.glob(f"{depth}*"))
    files = sorted(f for f in found if data_format(f) in RECORD_SUFFIXES
                   and not f.name.startswith("metadata.") and f.is_file())
    formats = sorted({data_format(f) for f in files})
    if len(formats) > 1:
        raise PelaError(f"{folder} holds records in several formats ({', '.join(formats)}); pass "
                        "one file, or a folder of one format")
    return files


# the class column's usual names (gold_label: SNLI, MNLI)
LABEL_FIELDS = ("label", "labels", "gold_label", "class", "category", "sentiment")


def default_label_field(first: dict[str, Any], class_labels: Sequence[str] = (),
                        headerless: bool = False) -> str:
    """The column that holds the class when none is named: ``label`` or another usual name for it
    (`LABEL_FIELDS`, not holding a list: IMDB's CSV has ``review`` and ``sentiment``), else a
    Hugging Face dataset's only ClassLabel column (clinc_oos's ``intent``), else, in a CSV or TSV
    file without a header row, its only column of whole numbers (AG News' class); ``label`` where
    there is none."""
    multi = (list, tuple, dict)  # a column of several labels a record is not the class
    named = [k for k in LABEL_FIELDS if k in first and not isinstance(value(first[k]), multi)]
    if named:
        return named[0]
    if len(class_labels) == 1:
        return class_labels[0]
    if not headerless:
        return "label"
    whole = [k for k, v in first.items()
             if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v)]
    return whole[0] if len(whole) == 1 else "label"


def _is_text(x: Any) -> bool:
    """A value of a text column: a string, and not a number written as one (CSV's idx column)."""
    return isinstance(x, str) and not is_number(x)


def _advancing(rows: Sequence[Any], bar: Any, every: int = 10_000) -> Iterator[Any]:
    with bar as advance:
        for n, row in enumerate(rows, 1):
            yield row
            if n % every == 0 or n == len(rows):
                advance(n % every or every)


def read_records(path: Path, text_field: str | None, label_field: str | None,
                 classes: list[str] | None = None, rows: Sequence[Any] | None = None,
                 label_names: list[str] | None = None, progress: bool = False) -> Records:
    """Records of ``path`` (or the given ``rows``), every row checked in one pass.

    ``text_field`` None: ``text``, or else the only field of text the records have;
    ``label_field`` None: `default_label_field`; ``classes``: the classes a model was trained on,
    which the labels must be among; ``label_names``: the dataset's own names for integer labels,
    in index order (Hugging Face's ClassLabel), where -1 means unlabelled; ``progress``: bars for
    large files.
    """
    rows = read_rows(path, progress) if rows is None else rows
    schema = _schema(path, rows, text_field, label_field, label_names)
    text_fields = schema.text_fields
    # for batches grouped by length
    lengths = array("q") if text_fields and schema.image_field is None else None
    seen: collections.Counter[str] = collections.Counter()
    labelled: bool | None = None
    shown = progress and len(rows) >= PROGRESS_RECORDS
    bar = progress_bar(shown, len(rows), f"checking {path.name}")
    for n, row in enumerate(_advancing(rows, bar), 1):
        label = schema.label(n, row)
        if labelled is None:
            labelled = label is not None
        elif labelled != (label is not None):
            raise PelaError(f"{path}: record {n if labelled else 1} has no "
                            f"{schema.label_field!r} while others do")
        if label is not None:
            seen[label] += 1
        if lengths is not None:
            lengths.append(sum(len(str(row[f])) for f in text_fields))
    labels = _classes(path, seen, label_names, classes) if labelled else None
    records = Records(rows, text_fields, schema.label_field, labels,
                      image_field=schema.image_field, root=path.parent, label_names=label_names,
                      lengths=lengths)
    records.counts = {c: seen[c] for c in labels or ()}
    # said where labels are needed (fine-tuning, evaluation), not here: distillation needs none
    if labels is None:
        records.unlabelled = schema.unlabelled()
    return records


@dataclass
class _Schema:
    """What every record of a file must have, as its first record says."""

    path: Path
    first: dict[str, Any]
    image_field: str | None
    text_fields: tuple[str, ...]
    label_field: str
    label_names: list[str] | None
    headerless: bool  # a CSV or TSV file without a header row: its columns named by position

    def label(self, n: int, row: Any) -> str | None:
        """Record ``n``'s class name (None: unlabelled), once it is checked to have its fields."""
        if not isinstance(row, dict):
            raise PelaError(f"{self.path}: record {n} is not an object with named fields")
        required = (self.image_field,) if self.image_field else self.text_fields
        for field in required:
            if field not in row:
                raise self._missing(n, row, field)
        for field in self.text_fields if self.image_field else ():
            if field not in row:
                raise PelaError(f"{self.path}: record {n} has no {field!r} field while others do")
        x, names = row.get(self.label_field), self.label_names
        if isinstance(x, (list, dict)):
            raise PelaError(f"{self.path}: record {n} has a list of labels; pela fine-tunes "
                            "single-label classifiers (use label_field=NAME to pick a column "
                            "with one class per record)")
        integer = isinstance(x, int) and not isinstance(x, bool)
        if names and integer and not -1 <= x < len(names):
            raise PelaError(f"{self.path}: record {n} has label {x}, but the dataset names "
                            f"{len(names)} classes")
        return label_of(x, names)

    def _missing(self, n: int, row: dict[str, Any], field: str) -> PelaError:
        how = "name the text with text_field=NAME (two, comma-separated, for sentence pairs)"
        if self.headerless and not self.image_field:
            return PelaError(f"{self.path} has no header row, so its columns are named by "
                             f"position ({_field_list(self.first, values=True)}); "
                             f"{how.replace('NAME', 'N')}")
        hint = "" if self.image_field else f"; {how}"
        return PelaError(f"{self.path}: record {n} has no {field!r} field (its fields: "
                         f"{_field_list(row)}){hint}")

    def unlabelled(self) -> str:
        """Why the records have no labels, for an error where labels are needed."""
        name, field = self.path.name, self.label_field
        if field in self.first:
            return (f"{name}'s {field!r} field holds no labels (a test split without answers, "
                    "say)")
        return (f"{name} has no {field!r} field (its fields: {_field_list(self.first)}); name the "
                "class column with label_field=NAME")


def _schema(path: Path, rows: Sequence[Any], text_field: str | None, label_field: str | None,
            label_names: list[str] | None) -> _Schema:
    if not len(rows):
        raise PelaError(f"dataset {path} is empty")
    first = rows[0]
    if not isinstance(first, dict):
        raise PelaError(f"{path}: record 1 is not an object with named fields")
    parts = getattr(rows, "parts", [rows])
    headerless = any(getattr(part, "headerless", False) for part in parts)
    if label_field is None:
        label_field = default_label_field(first, headerless=headerless)
    image_field, text_fields = _fields(first, text_field, label_field)
    return _Schema(path, first, image_field, text_fields, label_field, label_names, headerless)


def _classes(path: Path, seen: collections.Counter[str], label_names: list[str] | None,
             classes: list[str] | None) -> list[str]:
    """The class names: the dataset's own, else the labels seen in order, else ``classes`` (a
    model's) when every label is among them."""
    labels = list(label_names) if label_names else _sorted_labels(set(seen))
    fraction = r"-?\d*\.\d+(e-?\d+)?"
    fractional = next((x for x in labels if re.fullmatch(fraction, x)
                       and float(x) != int(float(x))), None)
    # STS-B's similarity scores, say: each distinct value would become a class
    if fractional is not None:
        raise PelaError(f"{path}: label {fractional!r} is a fractional number; pela fine-tunes "
                        "classifiers, not regression (use label_field=NAME to pick a column of "
                        "classes)")
    if classes is None:
        return labels
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise PelaError(f"{path}: label {unknown[0]!r} is not one of the {len(classes)} classes "
                        "the model was trained on")
    return list(classes)


def _fields(first: dict[str, Any], text_field: str | None,
            label_field: str) -> tuple[str | None, tuple[str, ...]]:
    """The field holding an image, if any, and the one or two holding text (none for images without
    a caption)."""
    # a field is an image path only if it names an image file: a "path" column of a text corpus is
    # not
    image_field = next((f for f in IMAGE_FIELDS if is_image(value(first.get(f)))), None)
    # encoded images under another name (webdataset's jpg, say): the only such field
    if image_field is None:
        encoded = [k for k, v in first.items() if isinstance(k, str) and encoded_image(value(v))]
        image_field = encoded[0] if len(encoded) == 1 else None
    if text_field is None:  # "text", or the one field of text there is (SST-2's "sentence", say)
        strings = [k for k, v in first.items()
                   if k != label_field and isinstance(k, str) and _is_text(value(v))]
        only = image_field is None and "text" not in first and len(strings) == 1
        text_field = strings[0] if only else "text"
    text_fields = tuple(f.strip() for f in text_field.split(",") if f.strip())
    if not 1 <= len(text_fields) <= 2:
        raise PelaError("text_field names one field, or two separated by a comma for sentence "
                        f"pairs; got {text_field!r}")
    if image_field is not None and not all(f in first for f in text_fields):
        return image_field, ()  # images with labels, no caption
    return image_field, text_fields


def _field_list(row: dict[str, Any], most: int = 12, values: bool = False) -> str:
    """The row's field names, or with ``values`` each name with its value (cut at 40 characters)."""
    cut = lambda v: repr(v if len(v) <= 40 else v[:39] + "…")  # noqa: E731
    names = [f"{k}: {cut(str(v))}" if values else str(k) for k, v in row.items()]
    if not names:
        return "none"
    more = f", ... ({len(names)} in all)" if len(names) > most else ""
    return ", ".join(names[:most]) + more
