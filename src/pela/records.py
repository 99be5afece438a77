"""Records: rows of CSV, TSV, JSON, JSONL, Parquet and Arrow files, as a dataset of text, text pairs or images.

A record holds its text in named fields (two for sentence pairs), or an image (a file path, or in
Parquet and Arrow the encoded image), and optionally a label. Classes are sorted names (integers by
value), or a Hugging Face dataset's own class names (its ClassLabel). Rows are read into memory,
except the encoded images of Parquet and Arrow files, which stay in Arrow's buffers.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
import re
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .errors import PelaError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# folder names that mean a split, not a class: ImageNet-style data is root/train/<class>/..., root/val/<class>/...
SPLIT_FOLDERS = {"train": ("train", "training"), "test": ("validation", "val", "valid", "dev", "test", "eval")}


# a record holds its image in one of these fields: a file path (Hugging Face's imagefolder metadata
# says file_name), or, in Parquet and Arrow, the encoded image itself ({"bytes": ..., "path": ...}; CIFAR's is img)
IMAGE_FIELDS = ("image", "img", "file_name", "image_path", "filepath", "path")


def _is_image(value: Any) -> bool:
    if isinstance(value, dict):
        return isinstance(value.get("bytes"), (bytes, bytearray)) or _is_image(value.get("path"))
    return isinstance(value, str) and Path(value).suffix.lower() in IMAGE_SUFFIXES


def open_image(path: Path, data: bytes | None = None) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise PelaError(f"cannot read image {path}: {e}") from None


class Records(Dataset):
    """Rows of a JSONL, JSON, CSV, TSV, Parquet or Arrow file: text (one field, or two for sentence pairs), or
    an image (a path relative to the file, or the encoded bytes) with or without a caption, and
    an optional label."""

    def __init__(self, rows: list[dict[str, Any]], text_fields: tuple[str, ...], label_field: str, labels: list[str] | None,
                 image_field: str | None = None, root: Path | None = None):
        self.rows, self.text_fields, self.label_field = rows, text_fields, label_field
        self.image_field, self.root = image_field, root or Path(".")
        self.classes = labels
        self.unlabelled: str | None = None  # why there are no labels, for an error where labels are needed
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
            image = value(row[self.image_field])
            if isinstance(image, dict):  # Parquet, Arrow: the encoded image, else its path
                item["image"] = open_image(self.root / str(image.get("path") or f"record {i}"), image.get("bytes"))
            else:
                item["image"] = open_image(self.root / image)
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


def gzipped(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def data_format(path: Path) -> str:
    """The suffix that says how to read ``path``, looking through a final ``.gz`` (train.jsonl.gz: .jsonl)."""
    return Path(path.stem if gzipped(path) else path.name).suffix.lower()


def _open_text(path: Path) -> Any:
    """``path`` as text, through gzip for ``.gz``; a byte-order mark is dropped."""
    if gzipped(path):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _json_lines(path: Path, text: str) -> list[Any]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise PelaError(f"{path}:{n} is not valid JSON: {e.msg}") from None
    return rows


def _read_rows(path: Path) -> list[Any]:
    """The records of a JSONL, JSON (a list of objects), CSV or TSV file, gzip-compressed or not.
    A byte-order mark is ignored."""
    fmt = data_format(path)
    try:
        with _open_text(path) as f:
            if fmt == ".jsonl":
                return _json_lines(path, f.read())
            if fmt == ".json":
                text = f.read()
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as e:
                    if e.msg == "Extra data" and text.lstrip().startswith("{"):
                        return _json_lines(path, text)  # JSON lines under .json, as C4's *.json.gz are
                    raise PelaError(f"{path} is not valid JSON: {e.msg} (line {e.lineno})") from None
                if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
                    data = next(iter(data.values()))  # {"data": [...]}, as many exports wrap their records
                if not isinstance(data, list):
                    raise PelaError(f"{path} must hold a list of records (or JSONL: one record per line)")
                return data
            # tab-separated files (GLUE's) do not quote: a " is part of the text
            dialect: dict[str, Any] = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == ".tsv" else {}
            header = f.readline()
            if fmt == ".csv" and "," not in header and ";" in header:
                dialect = dict(delimiter=";")  # what spreadsheets write where the comma is the decimal mark
            f.seek(0)
            return list(csv.DictReader(f, **dialect))
    except UnicodeDecodeError:
        raise PelaError(f"{path} is not UTF-8 text") from None
    except (gzip.BadGzipFile, EOFError) as e:
        raise PelaError(f"{path} is not a readable gzip file: {e}") from None


def _class_label_names(metadata: dict[bytes, bytes] | None) -> dict[str, list[str]]:
    """Class names per column, from the Hugging Face datasets description a Parquet or Arrow file carries."""
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
        return {k: [str(n) for n in v["names"]] for k, v in features.items()
                if isinstance(v, dict) and v.get("_type") == "ClassLabel" and v.get("names")}
    except (TypeError, KeyError, ValueError):
        return {}


TABLE_SUFFIXES = (".parquet", ".arrow")  # Arrow: what Hugging Face datasets' save_to_disk and cache write


def _read_table(f: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if f.suffix == ".parquet":
        # a row group at a time: read whole, pyarrow's reader peaks at several times the data in memory
        parquet = pq.ParquetFile(f)
        groups = [parquet.read_row_group(i) for i in range(parquet.num_row_groups)]
        return pa.concat_tables(groups) if groups else parquet.read()
    with pa.memory_map(str(f)) as source:  # datasets writes the stream format; the file format is Arrow's other one
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).read_all()


def read_tables(files: list[Path]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The rows of Parquet or Arrow files (one split of a Hugging Face dataset, say) and their class names."""
    if importlib.util.find_spec("pyarrow") is None:
        raise PelaError("reading Parquet or Arrow needs pyarrow: pip install 'pela[data]' (or pip install pyarrow)")
    rows: list[dict[str, Any]] = []
    names: dict[str, list[str]] = {}
    for f in files:
        kind = "Parquet" if f.suffix == ".parquet" else "Arrow"
        try:
            table = _read_table(f)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds for a broken file
            raise PelaError(f"{f} is not a readable {kind} file: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        # binary columns (encoded images) stay in Arrow's buffers, memory-mapped for Arrow files: as
        # Python objects they would double the memory, and DataLoader workers would copy them
        heavy = [field.name for field in table.schema if _is_binary(field.type)]
        start = len(rows)
        rows.extend(table.drop_columns(heavy).to_pylist())
        for name in heavy:
            column = table.column(name)
            for j, row in enumerate(rows[start:]):
                row[name] = Cell(column, j)
        names = names or _class_label_names(table.schema.metadata) or _dataset_info_names(f.parent)
    return rows, names


class Cell:
    """A value left in its Arrow column until an example needs it (an encoded image, say)."""

    __slots__ = ("column", "index")

    def __init__(self, column: Any, index: int):
        self.column, self.index = column, index

    def get(self) -> Any:
        return self.column[self.index].as_py()


def value(x: Any) -> Any:
    """``x``, read from its column if it was left there."""
    return x.get() if isinstance(x, Cell) else x


def _is_binary(t: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return True
    return pa.types.is_struct(t) and any(_is_binary(t.field(i).type) for i in range(t.num_fields))


def _dataset_info_names(folder: Path) -> dict[str, list[str]]:
    """Class names from the dataset_info.json that save_to_disk writes beside its Arrow files."""
    info = folder / "dataset_info.json"
    try:
        return _class_label_names({b"huggingface": json.dumps({"info": json.loads(info.read_text())}).encode()})
    except (OSError, ValueError):
        return {}


def table_files(path: Path) -> list[Path]:
    """A Parquet or Arrow file, or those of a dataset: a hub repository (data/train-00000-of-00001.parquet),
    save_to_disk's folder (train/data-00000-of-00001.arrow) or datasets' cache (imdb-train.arrow);
    at most three levels down. Parquet wins where a folder holds both."""
    if not path.is_dir():
        return [path] if path.suffix in TABLE_SUFFIXES else []
    for suffix in TABLE_SUFFIXES:
        files = sorted(f for depth in ("", "*/", "*/*/") for f in path.glob(f"{depth}*{suffix}"))
        if suffix == ".arrow":  # datasets' cache also holds the results of .map() (cache-<hash>.arrow): not a split
            files = [f for f in files if not f.name.startswith("cache-")]
        if files:
            return files
    return []


def table_split(root: Path, files: list[Path], split: str) -> list[Path]:
    """The files of one split: train-00000-of-00001.parquet, validation-*.parquet, train/0000.parquet,
    imdb-train.arrow, ..."""
    known = {name for names in SPLIT_FOLDERS.values() for name in names}

    def split_of(f: Path) -> str | None:
        words = [w.lower() for w in re.split(r"[-_.]", f.name)]
        if words[0] in known:  # <split>-00000-of-00001.parquet
            return words[0]
        if f.parent != root and f.parent.name.lower() in known:  # <split>/0000.parquet, <split>/data-00000-of-00001.arrow
            return f.parent.name.lower()
        # datasets' cache: <builder>-<split>[-00000-of-00002].arrow (builder names are snake_case)
        parts = f.stem.split("-")
        head = re.split(r"[_.]", parts[1])[0].lower() if len(parts) > 1 else ""
        return head if head in known else None

    tagged = {f: split_of(f) for f in files}
    if not any(tagged.values()):
        return files  # one split only
    for name in SPLIT_FOLDERS.get(split, (split,)):
        chosen = [f for f, s in tagged.items() if s == name]
        if chosen:
            return chosen
    raise PelaError(f"{root} holds the splits {', '.join(sorted({s for s in tagged.values() if s}))} but no {split} split "
                    f"({' or '.join(SPLIT_FOLDERS.get(split, (split,)))})")


def read_records(path: Path, text_field: str, label_field: str, classes: list[str] | None = None,
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
    image_field = next((f for f in IMAGE_FIELDS if _is_image(value(rows[0].get(f)))), None)
    if image_field is not None and not all(f in rows[0] for f in text_fields):
        text_fields = ()  # images with labels, no caption
    for n, row in enumerate(rows, 1):
        for field in (image_field,) if image_field else text_fields:
            if field not in row:
                raise PelaError(f"{path}: record {n} has no {field!r} field (its fields: {_field_list(row)})"
                                + ("" if image_field else "; name the text with --text-field"))
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
    records = Records(rows, text_fields, label_field, labels, image_field=image_field, root=path.parent)
    if labels is None:  # said where labels are needed (fine-tuning, evaluation), not here: distillation needs none
        records.unlabelled = (f"{path.name} has no {label_field!r} field (its fields: {_field_list(rows[0])}); "
                              "name the class column with --label-field")
    return records


def _field_list(row: dict[str, Any], most: int = 12) -> str:
    names = [str(k) for k in row]
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "") if names else "none"
