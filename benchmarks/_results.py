"""Every benchmark's results, written one way: atomically (a kill never leaves half a file) as
benchmarks/results/NAME.json, which docs/BENCHMARKS.md quotes.

``PELA_BENCH_RESULTS=DIR`` sends the files elsewhere, so a smoke run (the test suite's) never
overwrites the recorded figures.
"""

import json
import os
from pathlib import Path

from pela.utils.files import atomic_write_text


def results_dir() -> Path:
    return Path(os.environ.get("PELA_BENCH_RESULTS") or Path(__file__).with_name("results"))


def save(path: str | os.PathLike, result: dict | list, indent: int = 2) -> None:
    """Write ``result`` to ``path`` as JSON, atomically (a study that saves after each run resumes from it)."""
    atomic_write_text(path, json.dumps(result, indent=indent) + "\n")


def report(name: str, result: dict) -> None:
    """Print a benchmark's result and keep it as ``NAME.json`` in `results_dir`."""
    print(json.dumps(result, indent=2))
    save(results_dir() / f"{name}.json", result)
