"""Peak memory of data-aware compression, whole-model against block by block, on SmolLM2-135M.

Each way runs in a fresh process: load the model (from its GGUF file, converted once and saved as a
pela directory so the conversion's garbage is not counted), note the resident memory, calibrate and
compress at 20% fewer linear parameters, and note the peak. What compression adds to the loaded
model is set against the dense model's size and against one block's working set on the calibration
data (its dense copy, the hidden states entering it for teacher and student, and the teacher's inputs
to its layers), which is what block-by-block compression should add at most.

    one-shot        whitened, every layer's E[x xᵀ] gathered in one pass, every spectrum at once
    block_by_block  sequential with a ratio (`LowRankConfig.block_by_block`): one block's statistics at a time

    nice .venv/bin/python -m benchmarks.block_memory [--calib-samples 64] [--context 512] [--batch-size 16] [--results FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
from pathlib import Path

from benchmarks._results import save
from benchmarks.austen import write_split
from benchmarks.harness import smollm2_gguf

RESULTS = Path(__file__).with_name("results") / "block_memory.json"
WORK = Path("runs/bench_llm")
WAYS = {"one-shot": {"init": "whiten"}, "block_by_block": {"init": "whiten", "sequential": True}}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def measure(way: str, calib_samples: int, context: int, batch_size: int = 16) -> dict:
    """In this process: the memory one way of compressing takes."""
    import torch

    import pela
    from pela import LowRankConfig
    from pela.data.collate import Collator

    model_dir = WORK / "smollm2_dense"
    model = pela.load(model_dir)
    train = (WORK / "data" / "train.txt").read_text().splitlines()
    calib = random.Random(0).sample(train, calib_samples)
    loaded, peak_before = rss_mib(), peak_mib()
    config = LowRankConfig(ratio=1.25, **WAYS[way])
    with torch.no_grad():
        calibration = pela.calibrate(model, calib, config, collate_fn=Collator(model, max_length=context), batch_size=batch_size)
        report = pela.compress(model, config, calibration=calibration)
    tokens = sum(int(b["attention_mask"].sum()) for b in (calibration.inputs or [])) or max(calibration.tokens.values())
    return {"loaded_mib": round(loaded, 1), "peak_before_mib": round(peak_before, 1), "peak_mib": round(peak_mib(), 1),
            "added_mib": round(peak_mib() - loaded, 1), "tokens": tokens, "params_after": report.params_after}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calib-samples", type=int, default=64)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16, help="calibration examples per forward pass")
    p.add_argument("--way", choices=tuple(WAYS), help=argparse.SUPPRESS)  # the child process's one measurement
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.way:
        print(json.dumps(measure(args.way, args.calib_samples, args.context, args.batch_size)))
        return
    import pela

    write_split(WORK / "data")
    model_dir = WORK / "smollm2_dense"
    if not (model_dir / "pela.json").is_file():
        pela.save_pretrained(pela.load(smollm2_gguf()), model_dir, overwrite=True)
    model = pela.load(model_dir)
    cfg = model.config
    dense_mib = sum(q.numel() * q.element_size() for q in model.parameters()) / 2**20
    block_mib = sum(q.numel() * q.element_size() for q in model.model.layers[0].parameters()) / 2**20
    results = {"dense_model_mib": round(dense_mib, 1), "one_block_params_mib": round(block_mib, 1), "ways": {}}
    for way in WAYS:
        out = subprocess.run([sys.executable, __file__, "--way", way, "--calib-samples", str(args.calib_samples),
                              "--context", str(args.context), "--batch-size", str(args.batch_size)], check=True, capture_output=True, text=True)
        results["ways"][way] = json.loads(out.stdout.strip().splitlines()[-1])
        print(way, results["ways"][way], flush=True)
    tokens = results["ways"]["block_by_block"]["tokens"]
    # one block's working set on the calibration data (float32): hidden states in and out for teacher and
    # student, and the teacher's inputs to the block's stages (q/k/v, o, gate/up, down), plus its dense copy
    stage_widths = 3 * cfg.hidden_size + cfg.intermediate_size
    working = (4 * cfg.hidden_size + stage_widths) * tokens * 4 / 2**20 + block_mib
    results["one_block_working_set_mib"] = round(working, 1)
    results["calib_samples"], results["context"], results["batch_size"] = args.calib_samples, args.context, args.batch_size
    args.results.parent.mkdir(parents=True, exist_ok=True)
    save(args.results, results, indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
