"""Parquet and Arrow tables (what the Hugging Face hub serves and datasets saves), and shards in a
row."""

from __future__ import annotations

import bisect
import importlib.util
import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pela.data.cache import cached_copy
from pela.data.splits import SPLIT_FOLDERS
from pela.errors import PelaError
from pela.utils.progress import progress_bar

# a Parquet file larger than this, decompressed, is converted once into an Arrow file in pela's
# cache
# and memory-mapped from there, as Hugging Face datasets does, instead of being held in memory
PARQUET_CACHE_BYTES = 1 << 30


def _class_label_names(metadata: dict[bytes, bytes] | None) -> dict[str, list[str]]:
    """Class names per column, from the Hugging Face datasets description a Parquet or Arrow file
    carries."""
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
        return {k: [str(n) for n in v["names"]] for k, v in features.items()
                if isinstance(v, dict) and v.get("_type") == "ClassLabel" and v.get("names")}
    except (TypeError, KeyError, ValueError):
        return {}


# Arrow: what Hugging Face datasets' save_to_disk and cache write
TABLE_SUFFIXES = (".parquet", ".arrow")


def _read_table(f: Path, progress: bool = False) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if f.suffix == ".parquet":
        parquet = pq.ParquetFile(f)
        groups = range(parquet.num_row_groups)
        large = (
            sum(parquet.metadata.row_group(i).total_byte_size for i in groups)
            >= PARQUET_CACHE_BYTES
        )
        cached = _arrow_copy(f, parquet, progress) if large else None
        if cached is None:
            # a row group at a time: read whole, pyarrow's reader peaks at several times the data in
            # memory
            tables = [parquet.read_row_group(i) for i in groups]
            return pa.concat_tables(tables) if tables else parquet.read()
        f = cached  # memory-mapped below, as any Arrow file
    # datasets writes the stream format; the file format is Arrow's other one
    with pa.memory_map(str(f)) as source:
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).read_all()


def _arrow_copy(f: Path, parquet: Any, progress: bool) -> Path | None:
    """``f`` as an Arrow file in pela's cache (`cached_copy`)."""
    import pyarrow as pa

    def write(out: Path) -> None:
        bar = progress_bar(
            progress, parquet.num_row_groups, f"caching {f.name} as Arrow (row groups)"
        )
        with (
            bar as advance,
            pa.OSFile(str(out), "wb") as sink,
            pa.ipc.new_stream(sink, parquet.schema_arrow) as writer,
        ):
            for i in range(parquet.num_row_groups):
                writer.write_table(parquet.read_row_group(i))
                advance()

    return cached_copy(f, "arrow", ".arrow", write)


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
        return {
            name: Cell(column, j) if name in self.heavy else column[j].as_py()
            for name, column in self.columns
        }

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
                yield {
                    name: Cell(column, j) if name in self.heavy else row[name]
                    for name, column in self.columns
                }
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


def read_tables(
    files: list[Path], progress: bool = False
) -> tuple[ChainRows, dict[str, list[str]]]:
    """The rows of Parquet or Arrow files (one split of a Hugging Face dataset, say) and their class
    names."""
    if importlib.util.find_spec("pyarrow") is None:
        raise PelaError(
            "reading Parquet or Arrow needs pyarrow: pip install 'pela[data]' (or pip install "
            "pyarrow)"
        )
    tables = []
    names: dict[str, list[str]] = {}
    for f in files:
        kind = "Parquet" if f.suffix == ".parquet" else "Arrow"
        try:
            table = _read_table(f, progress)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds for a broken file
            raise PelaError(
                f"{f} is not a readable {kind} file: "
                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
            ) from e
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
        return _class_label_names(
            {b"huggingface": json.dumps({"info": json.loads(info.read_text())}).encode()}
        )
    except (OSError, ValueError):
        return {}


def table_files(path: Path) -> list[Path]:
    """A Parquet or Arrow file, or those of a dataset: a hub repository
    (data/train-00000-of-00001.parquet), save_to_disk's folder (train/data-00000-of-00001.arrow) or
    datasets' cache (imdb-train.arrow); at most three levels down. Parquet wins where a folder holds
    both."""
    if not path.is_dir():
        return [path] if path.suffix in TABLE_SUFFIXES else []
    for suffix in TABLE_SUFFIXES:
        files = sorted(f for depth in ("", "*/", "*/*/") for f in path.glob(f"{depth}*{suffix}"))
        # datasets' cache also holds the results of .map() (cache-<hash>.arrow): not a split
        if suffix == ".arrow":
            files = [f for f in files if not f.name.startswith("cache-")]
        if files:
            return files
    return []


def table_split(root: Path, files: list[Path], split: str) -> list[Path]:
    """The files of one split: train-00000-of-00001.parquet, validation-*.parquet,
    train/0000.parquet, imdb-train.arrow, ..."""
    known = {name for names in SPLIT_FOLDERS.values() for name in names}

    def split_of(f: Path) -> str | None:
        words = [w.lower() for w in re.split(r"[-_.]", f.name)]
        if words[0] in known:  # <split>-00000-of-00001.parquet
            return words[0]
        # <split>/0000.parquet, <split>/data-00000-of-00001.arrow
        if f.parent != root and f.parent.name.lower() in known:
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
    raise PelaError(
        f"{root} holds the splits {', '.join(sorted({s for s in tagged.values() if s}))} but no "
        f"{split} split ({' or '.join(SPLIT_FOLDERS.get(split, (split,)))})"
    )
