"""Jane Austen's six novels as plain text: real English prose for language-model benchmarks, offline.

Debian's ``r-cran-janeaustenr`` stores them as an R lazy-load database (``Rdata.rdx`` indexes
``Rdata.rdb``: per novel, a zlib-compressed serialized R character vector, one element per line);
`make install` unpacks the package's files into ``.venv/debian`` (installing it would bring all of
R) and PyPI's ``rdata`` parses R's serialization. Paragraphs are the runs of non-blank lines.
*Persuasion* is held out for evaluation; the other five are for calibration and distillation.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLACES = [ROOT / ".venv/debian/usr/lib/R/site-library/janeaustenr/data", Path("/usr/lib/R/site-library/janeaustenr/data")]
HELD_OUT = "persuasion"


def novels(data_dir: Path | None = None) -> dict[str, list[str]]:
    """``{name: paragraphs}`` for the six novels, in the package's order."""
    import rdata

    data_dir = data_dir or next((p for p in PLACES if (p / "Rdata.rdx").is_file()), None)
    if data_dir is None:
        raise SystemExit("error: Jane Austen's novels are missing: make install unpacks Debian's r-cran-janeaustenr")
    index = rdata.read_rds(data_dir / "Rdata.rdx")
    blob = (data_dir / "Rdata.rdb").read_bytes()
    out = {}
    for name, (offset, length) in index["variables"].items():
        raw = zlib.decompress(blob[offset + 4: offset + length])  # 4 bytes of uncompressed length, then zlib
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Unknown file type: assumed RDS": a database entry has no file header
            lines = rdata.conversion.convert(rdata.parser.parse_data(raw, expand_altrep=True))
        out[str(name)] = _paragraphs([str(line) for line in lines])
    return out


def _paragraphs(lines: list[str]) -> list[str]:
    paragraphs, current = [], []
    for line in lines + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return paragraphs


def write_split(work: Path) -> tuple[Path, Path]:
    """``train.txt`` (five novels, a paragraph per line) and ``heldout.txt`` (*Persuasion*) under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    books = novels()
    train, heldout = work / "train.txt", work / "heldout.txt"
    train.write_text("".join(p + "\n" for name, ps in books.items() if name != HELD_OUT for p in ps))
    heldout.write_text("".join(p + "\n" for p in books[HELD_OUT]))
    return train, heldout


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description="Print each novel's size in paragraphs and words.").parse_args()
    for name, ps in novels().items():
        print(f"{name:18s} {len(ps):5d} paragraphs {sum(len(p.split()) for p in ps):7d} words")
