"""JSON files: a list of records read as the byte ranges of its elements, or JSON lines."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pela.data import lines
from pela.data.cache import data_format, gunzip, gzipped
from pela.data.lines import BOM, ByteRanges, LineRows
from pela.errors import PelaError
from pela.utils.progress import bytes_bar


class JsonListRows(LineRows):
    """The elements of a JSON list (``[{...}, {...}]``, or ``{"data": [...]}``, one key holding the
    list, as many exports wrap it), left on disk as byte ranges and parsed when read.

    Indexing parses each element once and drops it, so no more than one is held at a time. It reads
    the bytes as Latin-1, one character per byte, so the decoder's positions are byte offsets;
    JSON's structure is ASCII, so the element boundaries are found correctly, and each element is
    decoded as UTF-8 when it is read. Any other layout raises `_NotAList`, and `read_rows` parses
    the file whole.
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
        with bytes_bar(
            progress and len(text) >= lines.PROGRESS_BYTES, len(text), f"indexing {path.name} (MiB)"
        ) as reach:
            pos = _skip_space(text, pos + 1)
            while text[pos : pos + 1] != "]" or self.starts:
                try:
                    _, end = decode(text, pos)
                except json.JSONDecodeError as e:
                    raise PelaError(
                        f"{path} is not valid JSON: {e.msg} (line {e.lineno})"
                    ) from None
                self.starts.append(pos)
                self.ends.append(end)
                reach(end)
                pos = _skip_space(text, end)
                if text[pos : pos + 1] == "]":
                    break
                if text[pos : pos + 1] != ",":
                    raise PelaError(
                        f"{path} is not valid JSON: expected ',' or ']' (line {self._line_of(pos)})"
                    )
                pos = _skip_space(text, pos + 1)
        pos = _skip_space(text, pos + 1)
        if wrapped:  # more keys, or not an object: the whole parse says what it is
            if text[pos : pos + 1] != "}":
                raise _NotAList
            pos = _skip_space(text, pos + 1)
        if pos != len(text):
            raise PelaError(
                f"{path} is not valid JSON: extra data after the list (line {self._line_of(pos)})"
            )


class _NotAList(Exception):
    """A JSON file whose top level is not a list: read whole (`read_rows`)."""


_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, pos: int) -> int:
    # type: ignore[union-attr] (the pattern matches the empty string)
    return _SPACE.match(text, pos).end()


def _json_lines(path: Path) -> bool:
    """Whether a ``.json`` file holds JSON lines (as C4's *.json.gz do): a whole object on its first
    line, and more after it."""
    with gzip.open(path, "rb") if gzipped(path) else open(path, "rb") as f:
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
        text = (
            gunzip(path).decode("utf-8-sig")
            if gzipped(path)
            else path.read_text(encoding="utf-8-sig")
        )
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
