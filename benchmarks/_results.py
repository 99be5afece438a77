"""Print a benchmark's result and keep it as benchmarks/results/NAME.json (what docs/BENCHMARKS.md quotes)."""

import json
from pathlib import Path


def report(name: str, result: dict) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(text + "\n")
