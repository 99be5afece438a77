"""Memory of a large records dataset: JSONL, a JSON list, CSV, Parquet and gzipped JSONL with N text records.

For each format a fresh process runs `pela.data.load_dataset` and reports the load time, how much
the process grew (its anonymous memory after loading, and its peak resident memory while loading), the time of one
random example, and what two DataLoader workers (forked, as on Linux) hold privately after one
epoch over the whole dataset: Python objects shared with a forked worker are copied into it page
by page as their reference counts change, so a dataset of a million dicts costs each worker its
own copy (pytorch/pytorch#13246).

    .venv/bin/python -m benchmarks.records_memory [--records 1000000] [--formats jsonl,json,csv,parquet,jsonl.gz]
        [--name records_memory] [--no-arrow-copy]

Parquet is measured three times: held in memory (files under 1 GiB decompressed, as this one), and
through its Arrow copy in the cache (files over 1 GiB): the load that writes the copy, and a later one.
Gzipped JSONL likewise: decompressed in memory (under 256 MB), and through its decompressed copy.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import importlib
import importlib.util
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._results import report

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which "
         "but have an they you were her she there been one all we their has would when if so no what up").split()


def _anon_mb() -> float:
    """The process's anonymous resident memory (RssAnon): what it holds itself, not the pages of
    memory-mapped files, which the kernel may drop and read again."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


def _private_mb(pid: int) -> float:
    """Memory only this process holds (Private_Clean + Private_Dirty of smaps_rollup)."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total / 1024


def write_data(folder: Path, n: int, formats: list[str]) -> dict[str, Path]:
    rng = random.Random(0)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(10, 40))) for _ in range(n)]
    labels = [f"class_{rng.randrange(20)}" for _ in range(n)]
    files = {}
    if "jsonl" in formats or "jsonl.gz" in formats:
        lines = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels))
        if "jsonl" in formats:
            files["jsonl"] = folder / "data.jsonl"
            files["jsonl"].write_text(lines)
        if "jsonl.gz" in formats:
            files["jsonl.gz"] = folder / "data.jsonl.gz"
            files["jsonl.gz"].write_bytes(gzip.compress(lines.encode(), compresslevel=1))
    if "json" in formats:  # one list, as Alpaca's and many exports are
        files["json"] = folder / "data.json"
        files["json"].write_text(json.dumps([{"text": t, "label": y} for t, y in zip(texts, labels)], indent=1))
    if "csv" in formats:
        files["csv"] = folder / "data.csv"
        with open(files["csv"], "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(zip(texts, labels))
    if "parquet" in formats:
        import pyarrow as pa
        import pyarrow.parquet as pq

        files["parquet"] = folder / "data.parquet"
        pq.write_table(pa.table({"text": texts, "label": labels}), files["parquet"], row_group_size=100_000)
    return files


def measure(path: Path, mmap: bool = False) -> dict:
    """In this (fresh) process: load, read, and iterate with two forked workers. ``mmap``: Parquet
    through its Arrow copy in the cache (PELA_CACHE), as pela reads files over 1 GiB decompressed,
    and gzip through its decompressed copy there, as for files over 256 MB."""
    from torch.utils.data import DataLoader

    import pela.data.lines
    import pela.data.tables
    from pela.data.load import load_dataset

    if mmap:
        pela.data.tables.PARQUET_CACHE_BYTES = pela.data.lines.GZIP_CACHE_BYTES = 0

    if importlib.util.find_spec("pyarrow"):  # the library's own memory is not the dataset's
        importlib.import_module("pyarrow.parquet")
    before = _anon_mb()
    t = time.perf_counter()
    ds = load_dataset(path)
    load_s = time.perf_counter() - t
    after = _anon_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    idx = random.Random(1).sample(range(len(ds)), 2000)
    t = time.perf_counter()
    for i in idx:
        ds[i]
    item_us = (time.perf_counter() - t) / len(idx) * 1e6
    loader = DataLoader(ds, batch_size=1024, num_workers=2, persistent_workers=True, collate_fn=len,
                        multiprocessing_context="fork")
    it = iter(loader)
    t = time.perf_counter()
    seen = sum(it)
    epoch_s = time.perf_counter() - t
    workers = [_private_mb(w.pid) for w in it._workers]  # persistent: still alive after the epoch
    del it, loader
    return {"records": len(ds), "file_mb": round(path.stat().st_size / 2**20, 1), "load_s": round(load_s, 2),
            "anon_growth_mb": round(after - before, 1), "peak_rss_mb": round(peak, 1),
            "item_us": round(item_us, 1), "epoch_s_2_workers": round(epoch_s, 2), "seen": seen,
            "worker_private_mb": [round(w, 1) for w in workers]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--formats", default="jsonl,json,csv,parquet,jsonl.gz")
    p.add_argument("--name", default="records_memory")
    p.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # a child process: measures one file
    p.add_argument("--write", type=Path, help=argparse.SUPPRESS)  # a child process: writes the files
    p.add_argument("--mmap", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-arrow-copy", action="store_true", help="measure Parquet and gzip only as held in memory (as pela before 2026-11-27)")
    args = p.parse_args()
    formats = args.formats.split(",")
    if args.measure:
        print(json.dumps(measure(args.measure, mmap=args.mmap)))
        return
    if args.write:
        print(json.dumps({k: str(v) for k, v in write_data(args.write, args.records, formats).items()}))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # written by a child, so that the measuring children do not inherit this process's peak memory
        out = subprocess.run([sys.executable, __file__, "--write", tmp, "--records", str(args.records), "--formats", args.formats],
                             capture_output=True, text=True, check=True)
        files = {k: Path(v) for k, v in json.loads(out.stdout).items()}
        runs = [(fmt, fmt, []) for fmt in formats]
        if "parquet" in formats and not args.no_arrow_copy:  # through the Arrow copy: the first load writes it, later ones map it
            runs += [("parquet, first load as Arrow", "parquet", ["--mmap"]), ("parquet, later loads as Arrow", "parquet", ["--mmap"])]
        if "jsonl.gz" in formats and not args.no_arrow_copy:  # decompressed into the cache, as files over 256 MB are
            runs += [("jsonl.gz, first load decompressed to the cache", "jsonl.gz", ["--mmap"]),
                     ("jsonl.gz, later loads", "jsonl.gz", ["--mmap"])]
        for name, fmt, extra in runs:
            env = {**os.environ, "PELA_CACHE": str(Path(tmp) / "cache")}
            out = subprocess.run([sys.executable, __file__, "--measure", str(files[fmt]), *extra], capture_output=True, text=True, env=env)
            if out.returncode:
                sys.exit(out.stderr)
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(name, results[name], file=sys.stderr)
    report(args.name, {"records": args.records, "formats": results})


if __name__ == "__main__":
    main()
