"""Compressed and converted copies of large files in pela's cache, one per file version."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
from pathlib import Path
from typing import Callable

from pela.errors import PelaError, warn
from pela.utils.files import cache_dir
from pela.utils.progress import bytes_bar


def gzipped(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def data_format(path: Path) -> str:
    """The suffix that says how to read ``path``, looking through a final ``.gz`` (train.jsonl.gz:
    .jsonl)."""
    return Path(path.stem if gzipped(path) else path.name).suffix.lower()


def gunzip(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as e:  # BadGzipFile is an OSError; a cut-off file ends early
        raise PelaError(f"{path} is not a readable gzip file: {e}") from e


def gunzipped_copy(path: Path, progress: bool) -> Path | None:
    """``path`` decompressed into pela's cache (`cached_copy`), a MiB at a time."""

    def write(out: Path) -> None:
        bar = bytes_bar(progress, path.stat().st_size, f"decompressing {path.name} (MiB read)")
        try:
            with (
                bar as reach,
                open(path, "rb") as raw,
                gzip.open(raw) as src,
                open(out, "wb") as dst,
            ):
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    reach(raw.tell())
        except (gzip.BadGzipFile, EOFError) as e:
            raise PelaError(f"{path} is not a readable gzip file: {e}") from e

    return cached_copy(path, "gunzip", "", write)


def cached_copy(f: Path, kind: str, suffix: str, write: Callable[[Path], None]) -> Path | None:
    """What ``write`` makes of ``f``, kept in pela's cache (`cache_dir`) and written once,
    atomically, per version of ``f`` (its size and time); None, with a warning, where the cache
    cannot be written, so that ``f`` is read into memory instead.

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
        # not another writer's .tmp file
        older = re.compile(re.escape(stem) + "-[0-9a-f]{16}" + re.escape(suffix))
        for old in out.parent.iterdir():
            if old != out and older.fullmatch(old.name):
                with contextlib.suppress(OSError):
                    old.unlink()
        return out
    except OSError as e:
        warn(
            f"reading {f} into memory: could not write its copy to {out.parent} ({e}); set "
            "PELA_CACHE to a writable folder"
        )
        return None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()  # what a failed write left
