"""Datasets of files: text lines, class folders of images or text files, Fashion-MNIST's idx
files."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from pela.data.images import IMAGE_SUFFIXES, open_image
from pela.data.lines import ByteRanges
from pela.data.splits import SPLIT_FOLDERS
from pela.errors import PelaError

TEXT_SUFFIXES = (".txt", ".text", "")  # no suffix: plain text files like Debian's fortunes
FOLDER_SUFFIXES = frozenset(IMAGE_SUFFIXES) | {".txt"}  # the files a folder dataset reads


class TextLines(ByteRanges, Dataset):
    """One example per non-empty line; an index of byte offsets keeps the file on disk
    (`ByteRanges`).

    A file in fortune's format (``strfile``: records of one or more lines, separated by lines
    holding only ``%``) gives one example per record instead, lines joined.
    """

    def __init__(self, path: Path, progress: bool = False):
        super().__init__(path, progress)
        with self._open() as f:
            head = f.read(1 << 20)
        # pickle's protocol header
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise PelaError(
                f"{path} is a Python pickle (CIFAR's batches are): pela never unpickles data, "
                "which can run code; use the dataset as Parquet or an image folder"
            )
        if b"\0" in head[:8192]:
            raise PelaError(
                f"{path} is not a text file (it holds NUL bytes); text data is one example per line"
            )
        # fortune's format shows in the first MiB: a separator every few lines (at most 15 in
        # Debian's
        # fortunes), not a stray % line in a corpus
        lines = head.split(b"\n")
        separators = sum(line.rstrip(b"\r") == b"%" for line in lines)
        self.separated = (
            separators >= 2 and sum(bool(line.strip()) for line in lines) <= 50 * separators
        )
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
        return {
            "text": self._read(self.starts[i], self.ends[i])
            .decode("utf-8", errors="replace")
            .strip()
        }


class FolderDataset(Dataset):
    """Files in class sub-folders (labelled) or directly in the folder (unlabelled): images, or, in
    a folder with none, ``.txt`` files, one example each (as Keras's
    ``text_dataset_from_directory``), or, in class sub-folders with neither, the files with no
    suffix (as 20 Newsgroups has them)."""

    def __init__(self, root: Path, classes: list[str] | None = None):
        subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if subdirs:
            self.classes: list[str] | None = (
                list(classes) if classes is not None else [d.name for d in subdirs]
            )
            unknown = [d.name for d in subdirs if d.name not in self.classes]
            if unknown:
                raise PelaError(
                    f"{root}: class folder {unknown[0]!r} is not one of the {len(self.classes)} "
                    "classes the model was trained on"
                )
            index = {c: i for i, c in enumerate(self.classes)}
            # by name only: a stat per file would add seconds on an ImageNet-sized tree
            found = [(p, index[d.name]) for d in subdirs for p in sorted(d.rglob("*"))]
            files = [(p, label) for p, label in found if p.suffix.lower() in FOLDER_SUFFIXES]
        else:
            self.classes = None
            files = [
                (p, None) for p in sorted(root.iterdir()) if p.suffix.lower() in FOLDER_SUFFIXES
            ]
        self.items = [(p, label) for p, label in files if p.suffix.lower() in IMAGE_SUFFIXES]
        self.text = not self.items
        if self.text:
            self.items = [(p, label) for p, label in files if p.suffix.lower() == ".txt"]
        # hidden files (.DS_Store) are no documents; folders have no suffix either
        if not self.items and subdirs:
            self.items = [
                (p, label)
                for p, label in found
                if not p.suffix and not p.name.startswith(".") and p.is_file()
            ]
        if not self.items:
            raise PelaError(
                f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) or .txt files"
                + (" (or files with no suffix) in its class sub-folders" if subdirs else "")
                + "; to read one text file, pass the file itself"
            )

    def __len__(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> list[int] | None:
        return [p.stat().st_size for p, _ in self.items] if self.text else None

    def __getitem__(self, i: int) -> dict[str, Any]:
        path, label = self.items[i]
        item: dict[str, Any] = (
            {"text": path.read_text(errors="replace").strip()}
            if self.text
            else {"image": open_image(path)}
        )
        return item if label is None else {**item, "label": label}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise PelaError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise PelaError(f"{path} is truncated: header says {shape}, found {body.size} values")
    return body.reshape(shape)


class IdxImages(Dataset):
    """Fashion-MNIST / MNIST idx files: ``*-images-idx3-ubyte[.gz]`` with
    ``*-labels-idx1-ubyte[.gz]``."""

    def __init__(self, images: Path, labels: Path | None, classes: list[str] | None = None):
        self.images = _read_idx(images)
        self.labels = None if labels is None else _read_idx(labels)
        if self.labels is not None and len(self.labels) != len(self.images):
            raise PelaError(
                f"{images} has {len(self.images)} images but {labels} has {len(self.labels)} labels"
            )
        self.classes = (
            None
            if self.labels is None
            else (
                list(classes)
                if classes is not None
                else [str(c) for c in range(int(self.labels.max()) + 1)]
            )
        )
        if self.classes is not None and int(self.labels.max()) >= len(self.classes):
            raise PelaError(
                f"{labels} has label {int(self.labels.max())}, but the model knows "
                f"{len(self.classes)} classes"
            )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from PIL import Image

        item: dict[str, Any] = {"image": Image.fromarray(self.images[i]).convert("RGB")}
        if self.labels is not None:
            item["label"] = int(self.labels[i])
        return item


def find_idx(root: Path, split: str) -> tuple[Path, Path | None] | None:
    for prefix in (split, "t10k" if split == "test" else split):
        for suffix in ("", ".gz"):
            images = root / f"{prefix}-images-idx3-ubyte{suffix}"
            if images.is_file():
                labels = root / f"{prefix}-labels-idx1-ubyte{suffix}"
                return images, labels if labels.is_file() else None
    return None


def split_folder(root: Path, split: str) -> Path | None:
    """``root/<split>`` when every sub-folder of ``root`` is a split (train, val, test, ...), else
    None."""
    subdirs = {
        d.name.lower(): d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
    }
    known = {name for names in SPLIT_FOLDERS.values() for name in names}
    if not subdirs or not set(subdirs) <= known:
        return None
    for name in SPLIT_FOLDERS.get(split, (split,)):
        if name in subdirs:
            return subdirs[name]
    raise PelaError(
        f"{root} holds the splits {', '.join(sorted(subdirs))} but no {split} split "
        f"({' or '.join(SPLIT_FOLDERS.get(split, (split,)))}); pass the split's folder itself"
    )
