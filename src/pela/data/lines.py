"""Line-based files (text, JSON lines, CSV, TSV) read by byte offsets: rows stay on disk until
read."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Iterator

from pela.data.cache import gunzip, gunzipped_copy, gzipped
from pela.errors import PelaError
from pela.utils.progress import bytes_bar

BOM = b"\xef\xbb\xbf"
# a .gz file this large is decompressed once into pela's cache, not into memory
GZIP_CACHE_BYTES = 256 << 20
PROGRESS_BYTES = 64 << 20  # files this large get a progress bar while they are indexed


class ByteRanges:
    """A file's examples as byte ranges (``starts``, ``ends``), read when asked: the file stays on
    disk, and millions of examples cost 16 bytes each, not a Python object each, which a forked
    DataLoader worker would copy page by page as it touched them. A ``.gz`` file is decompressed
    once, since gzip has no random access: into memory, or, over ``GZIP_CACHE_BYTES``, into pela's
    cache."""

    _fd: int | None = None
    _pid: int | None = None

    def __init__(self, path: Path, progress: bool = False):
        self.path = self._file = path  # what messages name; what is read
        self._data: bytes | None = None
        if gzipped(path):  # decompressed into memory, or, if large, once into the cache
            copy = (
                gunzipped_copy(path, progress) if path.stat().st_size >= GZIP_CACHE_BYTES else None
            )
            self._file, self._data = (copy, None) if copy is not None else (path, gunzip(path))
        self.starts, self.ends = array("q"), array("q")

    def __len__(self) -> int:
        return len(self.starts)

    def _lines(self, f: Any, progress: bool) -> Iterator[bytes]:
        """``f``'s lines, with a progress bar over the file's MiB where it is large."""
        size = len(self._data) if self._data is not None else self._file.stat().st_size
        with bytes_bar(
            progress and size >= PROGRESS_BYTES, size, f"indexing {self.path.name} (MiB)"
        ) as reach:
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
        # one descriptor per process: a forked worker opens its own
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self._file, os.O_RDONLY), os.getpid()
        return os.pread(self._fd, end - start, start)

    def __getstate__(self) -> dict[str, Any]:  # a spawned worker opens its own descriptor
        return {k: v for k, v in self.__dict__.items() if k not in ("_fd", "_pid")}

    # bound now: at exit the module may be gone
    def __del__(self, getpid: Any = os.getpid, close: Any = os.close) -> None:
        if self._fd is not None and self._pid == getpid():
            close(self._fd)


class LineRows(ByteRanges, Sequence):
    """The records of a JSONL, CSV or TSV file, left on disk (`ByteRanges`), parsed when read."""

    def __init__(self, path: Path, fmt: str, progress: bool = False):
        super().__init__(path, progress)
        self.fmt = fmt
        if fmt != ".jsonl":
            with self._open() as f:
                head = f.read(1 << 20)
            # classic Mac line ends, as Excel's "CSV (Macintosh)" writes
            if b"\r" in head and b"\n" not in head:
                self._data = (
                    self._data if self._data is not None else self._file.read_bytes()
                ).replace(b"\r", b"\n")
        self.fieldnames: list[str] = []
        # CSV/TSV whose first row is a record: its columns are named 0, 1, ...
        self.headerless = False
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
            raise PelaError(
                f"{path}:{self._line_of(self.ends[-1] if self.ends else 0)} is not valid CSV: {e}"
            ) from None

    def _header(self) -> None:
        """TSV: the first line names the fields. Tab-separated files (GLUE's) do not quote: a " is
        part of the text."""
        self.dialect = dict(delimiter="\t", quoting=csv.QUOTE_NONE)
        if self.starts:
            self._names(
                next(
                    csv.reader(
                        (self._read(self.starts[0], self.ends[0]).decode("utf-8"),), **self.dialect
                    )
                )
            )
            if not self.headerless:
                del self.starts[0], self.ends[0]

    def _names(self, first: list[str]) -> None:
        """The fields' names: the first row, unless it is a record. A first row that holds a number
        is one (AG News' and Yelp's CSV files begin with the class, CoLA's TSV files hold a 0/1
        label), except pandas' header of positional names (0, 1, ..., after an empty index name)."""
        names = first[1:] if first[:1] == [""] else first
        self.headerless = names != [str(i) for i in range(len(names))] and any(
            is_number(v) for v in first
        )
        self.fieldnames = [str(i) for i in range(len(first))] if self.headerless else first

    def _index_csv(self, lines: Iterator[bytes], begin: int) -> None:
        header = next(lines, b"")
        if b"," not in header and b";" in header:
            # what spreadsheets write where the comma is the decimal mark
            self.dialect = dict(delimiter=";")
        pos = [begin]

        # the csv reader pulls a record's lines and no more, so pos ends where it ends
        def text() -> Iterator[str]:
            for line in itertools.chain((header,), lines):
                pos[0] += len(line)
                yield line.decode("utf-8")

        # whole documents in a field are fine here
        csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
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
        # a quote that never closes swallows the rest of the file into the last record
        if self.starts:
            try:
                next(
                    csv.reader(
                        (self._read(self.starts[-1], self.ends[-1]).decode("utf-8"),),
                        strict=True,
                        **self.dialect,
                    )
                )
            except csv.Error as e:
                if "end of data" in str(e):
                    raise PelaError(
                        f"{self.path}:{self._line_of(self.starts[-1])} opens a quoted field that "
                        "never closes"
                    ) from None

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
        # CSV and TSV: one reader over the whole file, as fast as csv.DictReader; the same records
        # as the index
        with self._open() as f:
            text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
            # blank lines skipped, as indexed
            rows = (values for values in csv.reader(text, **self.dialect) if values)
            if not self.headerless:
                next(rows, None)  # the header
            for values in rows:
                yield self._record(values)

    def _parse(self, raw: bytes, offset: int) -> Any:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PelaError(
                f"{self.path} is not UTF-8 text (line {self._line_of(offset)})"
            ) from None
        if self.fmt in (".jsonl", ".json"):
            try:
                return json.loads(text)
            except json.JSONDecodeError as e:
                raise PelaError(
                    f"{self.path}:{self._line_of(offset)} is not valid JSON: {e.msg}"
                ) from None
        # one record: its only bare newline ends it
        return self._record(next(csv.reader((text,), **self.dialect)))

    def _record(self, values: list[str]) -> dict[Any, Any]:
        row: dict[Any, Any] = dict(zip(self.fieldnames, values))
        for name in self.fieldnames[len(values) :]:  # what csv.DictReader gives a short row
            row[name] = None
        if len(values) > len(self.fieldnames):
            row[None] = values[len(self.fieldnames) :]
        return row


def is_number(x: str) -> bool:
    return re.fullmatch(r"\s*-?\d+(\.\d*)?\s*", x) is not None
