"""Print a benchmark's result and keep it as benchmarks/results/NAME.json (what docs/BENCHMARKS.md quotes).

``PELA_BENCH_RESULTS=DIR`` sends the file elsewhere, so a smoke run (the test suite's) never
overwrites the recorded figures.
"""

import json
import os
from pathlib import Path


def report(name: str, result: dict) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    out = Path(os.environ.get("PELA_BENCH_RESULTS") or Path(__file__).with_name("results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(text + "\n")
