"""Atomic output: a crash never leaves a half-written file or directory; checks before slow work."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from pela.errors import PelaError


def cache_dir() -> Path:
    """Where pela keeps what it derives from your files: $PELA_CACHE, else $XDG_CACHE_HOME/pela,
    else ~/.cache/pela."""
    if os.environ.get("PELA_CACHE"):
        return Path(os.environ["PELA_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pela"


# ---------------------------------------------------------------- atomic output
def check_output_dir(directory: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an output directory that is a file, is non-empty (unless ``overwrite``) or
    unwritable."""
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise PelaError(f"output {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        if (path / "checkpoints" / "latest.json").is_file():
            raise PelaError(
                f"output directory {path} holds the checkpoints of an unfinished run: --resume "
                "continues it, "
                "--overwrite starts over (the old output stays until the new one is complete)"
            )
        raise PelaError(
            f"output directory {path} already exists and is not empty (use --overwrite to replace "
            "it)"
        )
    check_parent(path)
    return path


def check_not_input(out: str | os.PathLike, inputs: dict[str, Any]) -> None:
    """Refuse an output that is one of the inputs (or holds one): replacing it would destroy what
    the run reads.

    ``inputs`` maps a description (``"--student"``) to a path or a model source; sources that are
    not local paths (``hf:``, ``timm:``) and None are skipped.
    """
    target = Path(out).absolute().resolve()
    for what, value in inputs.items():
        if value is None or not Path(str(value)).exists():
            continue
        source = Path(str(value)).absolute().resolve()
        if source == target or target in source.parents:
            held = "is" if source == target else "holds"
            raise PelaError(
                f"--out {out} {held} the input {what} {value}: writing there would destroy it; "
                "choose another output directory"
            )


def check_parent(path: Path) -> None:
    """Refuse ``path`` if its folder could not be made and written in.

    Missing folders are created when the output is written (as ``save_pretrained`` does); this only
    checks, before any slow work starts, that the nearest existing one is a writable directory.
    """
    parent = path.absolute().parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PelaError(f"cannot create {parent}: {existing} is not a directory")
    if not os.access(existing, os.W_OK):
        raise PelaError(f"cannot write to {existing} (permission denied)")


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """A write that the system refuses (a full disk, a quota, a read-only file system) is the user's
    to mend: a `PelaError` naming what was being written, with the system's error as its cause."""
    try:
        yield
    except OSError as e:
        raise PelaError(f"could not write {path}: {e}") from e


@contextlib.contextmanager
def atomic_dir(directory: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``directory`` only if the block succeeds."""
    path = check_output_dir(directory, overwrite)
    with writing(path):
        path.absolute().parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.absolute().parent, path.name)
        tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(path.name), dir=path.absolute().parent))
    try:
        yield tmp
        default_permissions(tmp)
        replace_dir(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PelaError(f"could not write {path}: {e}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(new: Path, path: Path) -> None:
    """Move the complete directory ``new`` to ``path``; an old ``path`` is removed only once ``new``
    is there."""
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(new, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, path)


def temporary_prefix(name: str) -> str:
    """Temporary names carry the writing process's id, so a later run can tell one left by a killed
    process."""
    return f".{name}.tmp-{os.getpid()}-"


def remove_stale_temporaries(folder: Path, name: str = "*") -> None:
    """Remove what a killed process left half-written in ``folder`` (its ``.NAME.tmp-PID-*``
    entries, PID dead).

    A kill (SIGKILL, power loss) leaves no chance to clean up; the next write beside it does.
    """
    for entry in folder.glob(f".{name if name == '*' else glob.escape(name)}.tmp-*"):
        pid = entry.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(
                missing_ok=True
            )


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def default_permissions(root: Path) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; give them the modes a plain mkdir/open
    would."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [root, *root.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    with writing(path):
        path.absolute().parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path.name), dir=path.absolute().parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        default_permissions(Path(tmp))
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise PelaError(f"could not write {path}: {e}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PelaError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PelaError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise PelaError(f"{path} must hold a JSON object")
    return data
