"""Records: rows of CSV, TSV, JSON, JSONL, Parquet and Arrow files, as a dataset of text, text pairs or images.

A record holds its text in named fields (two for sentence pairs), or an image (a file path, or in
Parquet and Arrow the encoded image), and optionally a label. Classes are sorted names (integers by
value), or a Hugging Face dataset's own class names (its ClassLabel). Rows stay where they are
until an example is read: JSON lines, CSV and TSV on disk as byte offsets (`LineRows`), Parquet and
Arrow in Arrow's columns (`TableRows`), a JSON list as the byte ranges of its elements
(`JsonListRows`), the shards of a dataset one after another (`ChainRows`).
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import csv
import gzip
import hashlib
import importlib.util
import io
import itertools
import json
import os
import re
import warnings
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Iterator

from torch.utils.data import Dataset

from pela.utils.progress import bytes_bar, progress_bar
from pela.errors import PelaError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# folder names that mean a split, not a class: ImageNet-style data is root/train/<class>/..., root/val/<class>/...
HELD_OUT = ("validation", "val", "valid", "dev", "eval")  # what datasets call the split to evaluate on
SPLIT_FOLDERS = {"train": ("train", "training"), "test": HELD_OUT[:4] + ("test", "eval"), **{name: HELD_OUT for name in HELD_OUT}}


# a record holds its image in one of these fields: a file path (Hugging Face's imagefolder metadata
# says file_name), or, in Parquet and Arrow, the encoded image itself ({"bytes": ..., "path": ...}; CIFAR's is img)
IMAGE_FIELDS = ("image", "img", "file_name", "image_path", "filepath", "path")


def _is_image(value: Any) -> bool:
    if isinstance(value, dict):
        return isinstance(value.get("bytes"), (bytes, bytearray)) or _is_image(value.get("path"))
    return isinstance(value, str) and Path(value).suffix.lower() in IMAGE_SUFFIXES or _encoded_image(value)


# how encoded images begin: PNG, JPEG, GIF, BMP, TIFF (both byte orders), WebP (RIFF....WEBP)
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def _encoded_image(value: Any) -> bool:
    """Whether ``value`` is an encoded image: the bytes themselves, or Hugging Face's {"bytes": ...}."""
    if isinstance(value, dict):
        return _encoded_image(value.get("bytes"))
    return isinstance(value, (bytes, bytearray)) and (value.startswith(IMAGE_MAGIC) or value[:4] == b"RIFF" and value[8:12] == b"WEBP")


def open_image(path: Path, data: bytes | None = None) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:
            if im.mode == "I" or im.mode.startswith("I;16"):  # 16-bit grey (PNG, TIFF): convert would clip it to white
                import numpy as np

                grey = (np.clip(np.asarray(im, dtype=np.float64), 0, 65535) / 257).round().astype(np.uint8)
                return Image.fromarray(grey).convert("RGB")
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise PelaError(f"cannot read image {path}: {e}") from None


class Records(Dataset):
    """Rows of a JSONL, JSON, CSV, TSV, Parquet or Arrow file: text (one field, or two for sentence pairs), or
    an image (a path relative to the file, or the encoded bytes) with or without a caption, and
    an optional label. Build it with `read_records`, which checks every row once."""

    def __init__(self, rows: Sequence[dict[str, Any]], text_fields: tuple[str, ...], label_field: str, labels: list[str] | None,
                 image_field: str | None = None, root: Path | None = None, label_names: list[str] | None = None,
                 lengths: Sequence[int] | None = None):
        self.rows, self.text_fields, self.label_field = rows, text_fields, label_field
        self.image_field, self.root = image_field, root or Path(".")
        self.classes = labels
        self.label_names = label_names  # the dataset's own names for integer labels (Hugging Face's ClassLabel)
        self.unlabelled: str | None = None  # why there are no labels, for an error where labels are needed
        self._index = None if labels is None else {c: i for i, c in enumerate(labels)}  # not list.index per item
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
            image = value(row[self.image_field])
            if isinstance(image, dict):  # Parquet, Arrow: the encoded image, else its path
                item["image"] = open_image(self.root / str(image.get("path") or f"record {i}"), image.get("bytes"))
            elif isinstance(image, (bytes, bytearray)):  # a column of encoded images, as webdataset's jpg
                item["image"] = open_image(self.root / f"record {i}", bytes(image))
            else:
                item["image"] = open_image(self.root / image)
        if self.text_fields:
            item["text"] = str(row[self.text_fields[0]])
        if len(self.text_fields) == 2:
            item["text_pair"] = str(row[self.text_fields[1]])
        if self._index is not None:
            item["label"] = self._index[label_of(row.get(self.label_field), self.label_names)]
        return item


def label_of(x: Any, names: list[str] | None = None) -> str | None:
    """A row's class name, or None for no label; ``names``: a dataset's names for integer labels,
    where -1 means unlabelled (a Hugging Face test split's)."""
    if names and isinstance(x, int) and not isinstance(x, bool):
        return None if x == -1 else names[x]
    return None if x is None or x == "" else str(x)


def _sorted_labels(labels: set[str]) -> list[str]:
    """Class names in order; integers by value, so class 10 comes after class 9, not after class 1."""
    numeric = all(re.fullmatch(r"-?\d+", x) for x in labels)
    return sorted(labels, key=int) if numeric else sorted(labels)


def gzipped(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def data_format(path: Path) -> str:
    """The suffix that says how to read ``path``, looking through a final ``.gz`` (train.jsonl.gz: .jsonl)."""
    return Path(path.stem if gzipped(path) else path.name).suffix.lower()


def gunzip(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as e:  # BadGzipFile is an OSError; a cut-off file ends early
        raise PelaError(f"{path} is not a readable gzip file: {e}") from None


def _gunzipped_copy(path: Path, progress: bool) -> Path | None:
    """``path`` decompressed into pela's cache (`cached_copy`), a MiB at a time."""

    def write(out: Path) -> None:
        bar = bytes_bar(progress, path.stat().st_size, f"decompressing {path.name} (MiB read)")
        try:
            with bar as reach, open(path, "rb") as raw, gzip.open(raw) as src, open(out, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    reach(raw.tell())
        except (gzip.BadGzipFile, EOFError) as e:
            raise PelaError(f"{path} is not a readable gzip file: {e}") from None

    return cached_copy(path, "gunzip", "", write)


BOM = b"\xef\xbb\xbf"
PROGRESS_BYTES = 64 << 20  # files this large get a progress bar while they are indexed ...
PROGRESS_RECORDS = 250_000  # ... and datasets this long while their records are checked
GZIP_CACHE_BYTES = 256 << 20  # a .gz file this large is decompressed once into pela's cache, not into memory


class ByteRanges:
    """A file's examples as byte ranges (``starts``, ``ends``), read when asked: the file stays on disk,
    and millions of examples cost 16 bytes each, not a Python object each, which a forked DataLoader
    worker would copy page by page as it touched them. A ``.gz`` file is decompressed once, since
    gzip has no random access: into memory, or, over ``GZIP_CACHE_BYTES``, into pela's cache."""

    _fd: int | None = None
    _pid: int | None = None

    def __init__(self, path: Path, progress: bool = False):
        self.path = self._file = path  # what messages name; what is read
        self._data: bytes | None = None
        if gzipped(path):  # decompressed into memory, or, if large, once into the cache
            copy = _gunzipped_copy(path, progress) if path.stat().st_size >= GZIP_CACHE_BYTES else None
            self._file, self._data = (copy, None) if copy is not None else (path, gunzip(path))
        self.starts, self.ends = array("q"), array("q")

    def __len__(self) -> int:
        return len(self.starts)

    def _lines(self, f: Any, progress: bool) -> Iterator[bytes]:
        """``f``'s lines, with a progress bar over the file's MiB where it is large."""
        size = len(self._data) if self._data is not None else self._file.stat().st_size
        with bytes_bar(progress and size >= PROGRESS_BYTES, size, f"indexing {self.path.name} (MiB)") as reach:
            done = 0
            for line in f:
                yield line
                done += len(line)
                reach(done)

    def _index_lines(self, lines: Iterator[bytes], pos: int) -> None:
        """One example per non-blank line, from byte ``pos`` on."""
        for line in lines:
            if line.strip():
                self.starts.append(pos)
                self.ends.append(pos + len(line))
            pos += len(line)

    def _open(self) -> Any:
        return open(self._file, "rb") if self._data is None else io.BytesIO(self._data)

    def _read(self, start: int, end: int) -> bytes:
        if self._data is not None:
            return self._data[start:end]
        if self._fd is None or self._pid != os.getpid():  # one descriptor per process: a forked worker opens its own
            self._fd, self._pid = os.open(self._file, os.O_RDONLY), os.getpid()
        return os.pread(self._fd, end - start, start)

    def __getstate__(self) -> dict[str, Any]:  # a spawned worker opens its own descriptor
        return {k: v for k, v in self.__dict__.items() if k not in ("_fd", "_pid")}

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)


class LineRows(ByteRanges, Sequence):
    """The records of a JSONL, CSV or TSV file, left on disk (`ByteRanges`), parsed when read."""

    def __init__(self, path: Path, fmt: str, progress: bool = False):
        super().__init__(path, progress)
        self.fmt = fmt
        if fmt != ".jsonl":
            with self._open() as f:
                head = f.read(1 << 20)
            if b"\r" in head and b"\n" not in head:  # classic Mac line ends, as Excel's "CSV (Macintosh)" writes
                self._data = (self._data if self._data is not None else self._file.read_bytes()).replace(b"\r", b"\n")
        self.fieldnames: list[str] = []
        self.headerless = False  # CSV/TSV whose first row is a record: its columns are named 0, 1, ...
        self.dialect: dict[str, Any] = {}
        try:
            with self._open() as f:
                begin = len(BOM) if f.read(len(BOM)) == BOM else 0
                f.seek(begin)
                if fmt == ".csv":
                    self._index_csv(self._lines(f, progress), begin)
                else:  # JSON lines; TSV, which does not quote, so that a record is a line
                    self._index_lines(self._lines(f, progress), begin)
                    if fmt == ".tsv":
                        self._header()
        except UnicodeDecodeError:
            raise PelaError(f"{path} is not UTF-8 text") from None
        except csv.Error as e:
            raise PelaError(f"{path}:{self._line_of(self.ends[-1] if self.ends else 0)} is not valid CSV: {e}") from None

    def _header(self) -> None:
        """TSV: the first line names the fields. Tab-separated files (GLUE's) do not quote: a " is part of the text."""
        self.dialect = dict(delimiter="\t", quoting=csv.QUOTE_NONE)
        if self.starts:
            self._names(next(csv.reader((self._read(self.starts[0], self.ends[0]).decode("utf-8"),), **self.dialect)))
            if not self.headerless:
                del self.starts[0], self.ends[0]

    def _names(self, first: list[str]) -> None:
        """The fields' names: the first row, unless it is a record. A first row that holds a number is
        one (AG News' and Yelp's CSV files begin with the class, CoLA's TSV files hold a 0/1 label),
        except pandas' header of positional names (0, 1, ..., after an empty index name)."""
        names = first[1:] if first[:1] == [""] else first
        self.headerless = names != [str(i) for i in range(len(names))] and any(_is_number(v) for v in first)
        self.fieldnames = [str(i) for i in range(len(first))] if self.headerless else first

    def _index_csv(self, lines: Iterator[bytes], begin: int) -> None:
        header = next(lines, b"")
        if b"," not in header and b";" in header:
            self.dialect = dict(delimiter=";")  # what spreadsheets write where the comma is the decimal mark
        pos = [begin]

        def text() -> Iterator[str]:  # the csv reader pulls a record's lines and no more, so pos ends where it ends
            for line in itertools.chain((header,), lines):
                pos[0] += len(line)
                yield line.decode("utf-8")

        csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # whole documents in a field are fine here
        reader = csv.reader(text(), **self.dialect)
        while True:
            start = pos[0]
            try:
                values = next(reader)
            except StopIteration:
                break
            if not values:  # a blank line, as csv.DictReader skips them
                continue
            if not self.fieldnames:
                self._names(values)
                if not self.headerless:
                    continue
            self.starts.append(start)
            self.ends.append(pos[0])
        if self.starts:  # a quote that never closes swallows the rest of the file into the last record
            try:
                next(csv.reader((self._read(self.starts[-1], self.ends[-1]).decode("utf-8"),), strict=True, **self.dialect))
            except csv.Error as e:
                if "end of data" in str(e):
                    raise PelaError(f"{self.path}:{self._line_of(self.starts[-1])} opens a quoted field that never closes") from None

    def _line_of(self, offset: int) -> int:
        with self._open() as f:
            return f.read(offset).count(b"\n") + 1

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        return self._parse(self._read(self.starts[i], self.ends[i]), self.starts[i])

    def __iter__(self) -> Any:
        if self.fmt in (".jsonl", ".json"):
            with self._open() as f:  # in order, so the reads stay in the file's buffer
                for start, end in zip(self.starts, self.ends):
                    f.seek(start)
                    yield self._parse(f.read(end - start), start)
            return
        # CSV and TSV: one reader over the whole file, as fast as csv.DictReader; the same records as the index
        with self._open() as f:
            text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
            rows = (values for values in csv.reader(text, **self.dialect) if values)  # blank lines skipped, as indexed
            if not self.headerless:
                next(rows, None)  # the header
            for values in rows:
                yield self._record(values)

    def _parse(self, raw: bytes, offset: int) -> Any:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PelaError(f"{self.path} is not UTF-8 text (line {self._line_of(offset)})") from None
        if self.fmt in (".jsonl", ".json"):
            try:
                return json.loads(text)
            except json.JSONDecodeError as e:
                raise PelaError(f"{self.path}:{self._line_of(offset)} is not valid JSON: {e.msg}") from None
        return self._record(next(csv.reader((text,), **self.dialect)))  # one record: its only bare newline ends it

    def _record(self, values: list[str]) -> dict[Any, Any]:
        row: dict[Any, Any] = dict(zip(self.fieldnames, values))
        for name in self.fieldnames[len(values):]:  # what csv.DictReader gives a short row
            row[name] = None
        if len(values) > len(self.fieldnames):
            row[None] = values[len(self.fieldnames):]
        return row


class JsonListRows(LineRows):
    """The elements of a JSON list (``[{...}, {...}]``, or ``{"data": [...]}``, one key holding the
    list, as many exports wrap it), left on disk as byte ranges and parsed when read.

    Indexing parses each element once and drops it, so no more than one is held at a time. It reads
    the bytes as Latin-1, one character per byte, so the decoder's positions are byte offsets; JSON's
    structure is ASCII, so the element boundaries are found correctly, and each element is decoded as
    UTF-8 when it is read. Any other layout raises `_NotAList`, and `read_rows` parses the file whole.
    """

    def __init__(self, path: Path, progress: bool = False):
        ByteRanges.__init__(self, path, progress)
        self.fmt, self.fieldnames, self.dialect = ".json", [], {}
        text = (self._data if self._data is not None else self._file.read_bytes()).decode("latin-1")
        decode = json.JSONDecoder().raw_decode
        pos = _skip_space(text, len(BOM) if text.startswith(BOM.decode("latin-1")) else 0)
        wrapped = text[pos:pos + 1] == "{"
        if wrapped:  # {"key": [...]}: step over the key
            pos = _skip_space(text, pos + 1)
            if text[pos:pos + 1] != '"':
                raise _NotAList
            try:
                pos = _skip_space(text, decode(text, pos)[1])
            except json.JSONDecodeError:
                raise _NotAList from None
            if text[pos:pos + 1] != ":":
                raise _NotAList
            pos = _skip_space(text, pos + 1)
        if text[pos:pos + 1] != "[":
            raise _NotAList
        with bytes_bar(progress and len(text) >= PROGRESS_BYTES, len(text), f"indexing {path.name} (MiB)") as reach:
            pos = _skip_space(text, pos + 1)
            while text[pos:pos + 1] != "]" or self.starts:
                try:
                    _, end = decode(text, pos)
                except json.JSONDecodeError as e:
                    raise PelaError(f"{path} is not valid JSON: {e.msg} (line {e.lineno})") from None
                self.starts.append(pos)
                self.ends.append(end)
                reach(end)
                pos = _skip_space(text, end)
                if text[pos:pos + 1] == "]":
                    break
                if text[pos:pos + 1] != ",":
                    raise PelaError(f"{path} is not valid JSON: expected ',' or ']' (line {self._line_of(pos)})")
                pos = _skip_space(text, pos + 1)
        pos = _skip_space(text, pos + 1)
        if wrapped:  # more keys, or not an object: the whole parse says what it is
            if text[pos:pos + 1] != "}":
                raise _NotAList
            pos = _skip_space(text, pos + 1)
        if pos != len(text):
            raise PelaError(f"{path} is not valid JSON: extra data after the list (line {self._line_of(pos)})")


class _NotAList(Exception):
    """A JSON file whose top level is not a list: read whole (`read_rows`)."""


_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, pos: int) -> int:
    return _SPACE.match(text, pos).end()  # type: ignore[union-attr]  (the pattern matches the empty string)


def _json_lines(path: Path) -> bool:
    """Whether a ``.json`` file holds JSON lines (as C4's *.json.gz do): a whole object on its first
    line, and more after it."""
    with (gzip.open(path, "rb") if gzipped(path) else open(path, "rb")) as f:
        first = f.readline(1 << 24).removeprefix(BOM)
        rest = any(line.strip() for line in iter(lambda: f.readline(1 << 16), b""))
    try:
        return isinstance(json.loads(first), dict) and rest
    except ValueError:  # UnicodeDecodeError too
        return False


def read_rows(path: Path, progress: bool = False) -> Sequence[Any]:
    """The records of a JSONL, JSON (a list of objects), CSV or TSV file, gzip-compressed or not.
    A byte-order mark is ignored. They stay on disk (`LineRows`, `JsonListRows`), except those of a
    JSON file of some other layout, which is parsed whole to say what it holds."""
    fmt = data_format(path)
    try:
        if fmt == ".json" and _json_lines(path):
            return LineRows(path, ".jsonl", progress)
        if fmt != ".json":
            return LineRows(path, fmt, progress)
        with contextlib.suppress(_NotAList):
            return JsonListRows(path, progress)
        text = gunzip(path).decode("utf-8-sig") if gzipped(path) else path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise PelaError(f"{path} is not UTF-8 text") from None
    except (gzip.BadGzipFile, EOFError) as e:
        raise PelaError(f"{path} is not a readable gzip file: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PelaError(f"{path} is not valid JSON: {e.msg} (line {e.lineno})") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]}, as many exports wrap their records
    if not isinstance(data, list):
        raise PelaError(f"{path} must hold a list of records (or JSONL: one record per line)")
    return data


def _class_label_names(metadata: dict[bytes, bytes] | None) -> dict[str, list[str]]:
    """Class names per column, from the Hugging Face datasets description a Parquet or Arrow file carries."""
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
        return {k: [str(n) for n in v["names"]] for k, v in features.items()
                if isinstance(v, dict) and v.get("_type") == "ClassLabel" and v.get("names")}
    except (TypeError, KeyError, ValueError):
        return {}


TABLE_SUFFIXES = (".parquet", ".arrow")  # Arrow: what Hugging Face datasets' save_to_disk and cache write


# a Parquet file larger than this, decompressed, is converted once into an Arrow file in pela's cache
# and memory-mapped from there, as Hugging Face datasets does, instead of being held in memory
PARQUET_CACHE_BYTES = 1 << 30


def cache_dir() -> Path:
    """Where pela keeps what it derives from your files: $PELA_CACHE, else $XDG_CACHE_HOME/pela, else ~/.cache/pela."""
    if os.environ.get("PELA_CACHE"):
        return Path(os.environ["PELA_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pela"


def _read_table(f: Path, progress: bool = False) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if f.suffix == ".parquet":
        parquet = pq.ParquetFile(f)
        groups = range(parquet.num_row_groups)
        large = sum(parquet.metadata.row_group(i).total_byte_size for i in groups) >= PARQUET_CACHE_BYTES
        cached = _arrow_copy(f, parquet, progress) if large else None
        if cached is None:
            # a row group at a time: read whole, pyarrow's reader peaks at several times the data in memory
            tables = [parquet.read_row_group(i) for i in groups]
            return pa.concat_tables(tables) if tables else parquet.read()
        f = cached  # memory-mapped below, as any Arrow file
    with pa.memory_map(str(f)) as source:  # datasets writes the stream format; the file format is Arrow's other one
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).read_all()


def _arrow_copy(f: Path, parquet: Any, progress: bool) -> Path | None:
    """``f`` as an Arrow file in pela's cache (`cached_copy`)."""
    import pyarrow as pa

    def write(out: Path) -> None:
        bar = progress_bar(progress, parquet.num_row_groups, f"caching {f.name} as Arrow (row groups)")
        with bar as advance, pa.OSFile(str(out), "wb") as sink, pa.ipc.new_stream(sink, parquet.schema_arrow) as writer:
            for i in range(parquet.num_row_groups):
                writer.write_table(parquet.read_row_group(i))
                advance()

    return cached_copy(f, "arrow", ".arrow", write)


def cached_copy(f: Path, kind: str, suffix: str, write: Callable[[Path], None]) -> Path | None:
    """What ``write`` makes of ``f``, kept in pela's cache (`cache_dir`) and written once, atomically,
    per version of ``f`` (its size and time); None, with a warning, where the cache cannot be
    written, so that ``f`` is read into memory instead.

    A new version's copy replaces the old version's, so the cache holds one copy per file. A process
    still reading the old copy keeps its open descriptor or mapping, which outlive the file's name.
    """
    digest = lambda text: hashlib.sha256(text.encode()).hexdigest()[:16]  # noqa: E731
    stat = f.stat()
    stem = f"{f.name.removesuffix(f.suffix)}-{digest(str(f.resolve()))}"
    out = cache_dir() / kind / f"{stem}-{digest(f'{stat.st_size}|{stat.st_mtime_ns}')}{suffix}"
    if out.is_file():
        return out
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, out)
        older = re.compile(re.escape(stem) + "-[0-9a-f]{16}" + re.escape(suffix))  # not another writer's .tmp file
        for old in out.parent.iterdir():
            if old != out and older.fullmatch(old.name):
                with contextlib.suppress(OSError):
                    old.unlink()
        return out
    except OSError as e:
        warnings.warn(f"reading {f} into memory: could not write its copy to {out.parent} ({e}); set PELA_CACHE to a writable folder")
        return None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()  # what a failed write left


class TableRows(Sequence):
    """The rows of an Arrow table (from a Parquet or Arrow file), left in Arrow's columns and turned
    into a dict when read. Binary columns (encoded images) come as `Cell`s, read only where an
    example needs them."""

    def __init__(self, table: Any):
        self.table = table
        self.heavy = {f.name for f in table.schema if _is_binary(f.type)}
        self.columns = list(zip(table.column_names, table.columns))

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, j: int) -> dict[str, Any]:  # type: ignore[override]
        if not 0 <= j < len(self):
            raise IndexError(j)
        return {name: Cell(column, j) if name in self.heavy else column[j].as_py() for name, column in self.columns}

    def __iter__(self) -> Any:
        if not self.heavy:
            for batch in self.table.to_batches(max_chunksize=1 << 16):
                yield from batch.to_pylist()
            return
        light = self.table.drop_columns(sorted(self.heavy))
        j = 0
        for batch in light.to_batches(max_chunksize=1 << 16):
            rows = batch.to_pylist() if batch.num_columns else [{} for _ in range(batch.num_rows)]
            for row in rows:
                yield {name: Cell(column, j) if name in self.heavy else row[name] for name, column in self.columns}
                j += 1


class ChainRows(Sequence):
    """The rows of several files (the shards of a dataset), one file's after another's."""

    def __init__(self, parts: list[Sequence[Any]]):
        self.parts = [part for part in parts if len(part)]
        self.offsets = list(itertools.accumulate((len(part) for part in self.parts), initial=0))

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self.offsets, i) - 1
        return self.parts[k][i - self.offsets[k]]

    def __iter__(self) -> Any:
        return itertools.chain.from_iterable(self.parts)


def read_tables(files: list[Path], progress: bool = False) -> tuple[ChainRows, dict[str, list[str]]]:
    """The rows of Parquet or Arrow files (one split of a Hugging Face dataset, say) and their class names."""
    if importlib.util.find_spec("pyarrow") is None:
        raise PelaError("reading Parquet or Arrow needs pyarrow: pip install 'pela[data]' (or pip install pyarrow)")
    tables = []
    names: dict[str, list[str]] = {}
    for f in files:
        kind = "Parquet" if f.suffix == ".parquet" else "Arrow"
        try:
            table = _read_table(f, progress)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds for a broken file
            raise PelaError(f"{f} is not a readable {kind} file: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        tables.append(table)
        names = names or _class_label_names(table.schema.metadata) or _dataset_info_names(f.parent)
    return ChainRows([TableRows(t) for t in tables]), names


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


RECORD_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")


def record_files(folder: Path) -> list[Path]:
    """The record files of a folder of shards (C4's c4-train.00000-of-01024.json.gz, say), at most
    three levels down, gzipped or not, all of one format; an image folder's metadata file is not one."""
    files = sorted(f for depth in ("", "*/", "*/*/") for f in folder.glob(f"{depth}*")
                   if data_format(f) in RECORD_SUFFIXES and not f.name.startswith("metadata.") and f.is_file())
    formats = sorted({data_format(f) for f in files})
    if len(formats) > 1:
        raise PelaError(f"{folder} holds records in several formats ({', '.join(formats)}); pass one file, or a folder of one format")
    return files


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


LABEL_FIELDS = ("label", "labels", "gold_label", "class", "category", "sentiment")  # the class column's usual names (gold_label: SNLI, MNLI)


def default_label_field(first: dict[str, Any], class_labels: Sequence[str] = (), headerless: bool = False) -> str:
    """The column that holds the class when none is named: ``label`` or another usual name for it
    (`LABEL_FIELDS`, not holding a list: IMDB's CSV has ``review`` and ``sentiment``), else a Hugging Face
    dataset's only ClassLabel column (clinc_oos's ``intent``), else, in a CSV or TSV file without a
    header row, its only column of whole numbers (AG News' class); ``label`` where there is none."""
    named = [k for k in LABEL_FIELDS if k in first and not isinstance(value(first[k]), (list, tuple, dict))]  # not multi-label
    if named:
        return named[0]
    if len(class_labels) == 1:
        return class_labels[0]
    whole = [k for k, v in first.items() if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v)] if headerless else []
    return whole[0] if len(whole) == 1 else "label"


def _is_number(x: str) -> bool:
    return re.fullmatch(r"\s*-?\d+(\.\d*)?\s*", x) is not None


def _is_text(x: Any) -> bool:
    """A value of a text column: a string, and not a number written as one (CSV's idx column)."""
    return isinstance(x, str) and not _is_number(x)


def _advancing(rows: Sequence[Any], bar: Any, every: int = 10_000) -> Iterator[Any]:
    with bar as advance:
        for n, row in enumerate(rows, 1):
            yield row
            if n % every == 0 or n == len(rows):
                advance(n % every or every)


def read_records(path: Path, text_field: str | None, label_field: str | None, classes: list[str] | None = None,
                 rows: Sequence[Any] | None = None, label_names: list[str] | None = None, progress: bool = False) -> Records:
    """Records of ``path`` (or the given ``rows``), every row checked in one pass; ``text_field``
    None: ``text``, or else the only field of text the records have; ``label_field`` None:
    `default_label_field`; ``label_names``:
    the dataset's own names for integer labels, in index order (Hugging Face's ClassLabel), where -1
    means unlabelled; ``progress``: bars for large files."""
    rows = read_rows(path, progress) if rows is None else rows
    if not len(rows):
        raise PelaError(f"dataset {path} is empty")
    first = rows[0]
    if not isinstance(first, dict):
        raise PelaError(f"{path}: record 1 is not an object with named fields")
    headerless = any(getattr(part, "headerless", False) for part in getattr(rows, "parts", [rows]))
    if label_field is None:
        label_field = default_label_field(first, headerless=headerless)
    # a field is an image path only if it names an image file: a "path" column of a text corpus is not
    image_field = next((f for f in IMAGE_FIELDS if _is_image(value(first.get(f)))), None)
    if image_field is None:  # encoded images under another name (webdataset's jpg, say): the only such field
        encoded = [k for k, v in first.items() if isinstance(k, str) and _encoded_image(value(v))]
        image_field = encoded[0] if len(encoded) == 1 else None
    if text_field is None:  # "text", or the one field of text there is (SST-2's "sentence", say)
        strings = [k for k, v in first.items() if k != label_field and isinstance(k, str) and _is_text(value(v))]
        text_field = strings[0] if image_field is None and "text" not in first and len(strings) == 1 else "text"
    text_fields = tuple(f.strip() for f in text_field.split(",") if f.strip())
    if not 1 <= len(text_fields) <= 2:
        raise PelaError(f"--text-field names one field, or two separated by a comma for sentence pairs; got {text_field!r}")
    if image_field is not None and not all(f in first for f in text_fields):
        text_fields = ()  # images with labels, no caption
    required = (image_field,) if image_field else text_fields
    lengths = array("q") if text_fields and image_field is None else None  # for batches grouped by length
    seen: collections.Counter[str] = collections.Counter()
    labelled: bool | None = None
    bar = progress_bar(progress and len(rows) >= PROGRESS_RECORDS, len(rows), f"checking {path.name}")
    for n, row in enumerate(_advancing(rows, bar), 1):
        if not isinstance(row, dict):
            raise PelaError(f"{path}: record {n} is not an object with named fields")
        for field in required:
            if field not in row:
                if headerless and not image_field:
                    raise PelaError(f"{path} has no header row, so its columns are named by position ({_field_list(first, values=True)}); "
                                    "name the text with --text-field N (two, comma-separated, for sentence pairs)")
                raise PelaError(f"{path}: record {n} has no {field!r} field (its fields: {_field_list(row)})"
                                + ("" if image_field else "; name the text with --text-field (two, comma-separated, for sentence pairs)"))
        for field in text_fields if image_field else ():
            if field not in row:
                raise PelaError(f"{path}: record {n} has no {field!r} field while others do")
        x = row.get(label_field)
        if isinstance(x, (list, dict)):
            raise PelaError(f"{path}: record {n} has a list of labels; pela fine-tunes single-label classifiers "
                            "(use --label-field to pick a column with one class per record)")
        if label_names and isinstance(x, int) and not isinstance(x, bool) and not -1 <= x < len(label_names):
            raise PelaError(f"{path}: record {n} has label {x}, but the dataset names {len(label_names)} classes")
        label = label_of(x, label_names)
        if labelled is None:
            labelled = label is not None
        elif labelled != (label is not None):
            raise PelaError(f"{path}: record {n if labelled else 1} has no {label_field!r} while others do")
        if label is not None:
            seen[label] += 1
        if lengths is not None:
            lengths.append(sum(len(str(row[f])) for f in text_fields))
    labels = (list(label_names) if label_names else _sorted_labels(seen)) if labelled else None
    fractional = next((x for x in labels or () if re.fullmatch(r"-?\d*\.\d+(e-?\d+)?", x) and float(x) != int(float(x))), None)
    if fractional is not None:  # STS-B's similarity scores, say: each distinct value would become a class
        raise PelaError(f"{path}: label {fractional!r} is a fractional number; pela fine-tunes classifiers, "
                        f"not regression (use --label-field to pick a column of classes)")
    if labels is not None and classes is not None:
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise PelaError(f"{path}: label {unknown[0]!r} is not one of the {len(classes)} classes the model was trained on")
        labels = list(classes)
    records = Records(rows, text_fields, label_field, labels, image_field=image_field, root=path.parent,
                      label_names=label_names, lengths=lengths)
    records.counts = {c: seen[c] for c in labels or ()}
    if labels is None:  # said where labels are needed (fine-tuning, evaluation), not here: distillation needs none
        records.unlabelled = (f"{path.name}'s {label_field!r} field holds no labels (a test split without answers, say)"
                              if label_field in first else
                              f"{path.name} has no {label_field!r} field (its fields: {_field_list(first)}); "
                              "name the class column with --label-field")
    return records


def _field_list(row: dict[str, Any], most: int = 12, values: bool = False) -> str:
    """The row's field names, or with ``values`` each name with its value (cut at 40 characters)."""
    cut = lambda v: repr(v if len(v) <= 40 else v[:39] + "…")  # noqa: E731
    names = [f"{k}: {cut(str(v))}" if values else str(k) for k, v in row.items()]
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "") if names else "none"
