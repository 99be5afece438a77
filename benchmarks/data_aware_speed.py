"""How long data-aware compression of a base-size model takes: calibration, sensitivity probes, factorization.

A BERT-base-sized encoder (12 layers x 768, random init, with all-MiniLM-L6-v2's tokenizer, the same
30,522-word vocabulary) is compressed the way `pela compress DIR --calib glosses.txt --param-budget 0.5`
does it: calibration on 512 WordNet training glosses, whitened SVD, ranks allocated across layers by
measured sensitivity. Each phase is timed, and the calibration statistics held in memory are counted.

    .venv/bin/python -m benchmarks.data_aware_speed [--samples 512] [--name data_aware_speed]

Writes benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import time
from pathlib import Path

import torch

import pela
from benchmarks._results import report
from benchmarks.harness import gloss_texts, minilm_dir
from pela import LowRankConfig
from pela.data.collate import Collator

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def base_encoder(work: Path, layers: int, width: int) -> Path:
    """A BERT-base-sized model directory (random weights) with MiniLM's tokenizer."""
    from transformers import BertConfig, BertModel

    path = work / f"bert_{layers}x{width}"
    if not (path / "model.safetensors").is_file():
        torch.manual_seed(0)
        BertModel(BertConfig(hidden_size=width, num_hidden_layers=layers, num_attention_heads=width // 64,
                             intermediate_size=4 * width)).save_pretrained(path)
        for name in TOKENIZER_FILES:
            if (minilm_dir() / name).is_file():
                shutil.copy(minilm_dir() / name, path / name)
    return path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=512, help="calibration examples")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--probe-samples", type=int, default=None, help="calibration examples each sensitivity probe runs (default: pela's)")
    p.add_argument("--name", default="data_aware_speed")
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    work = Path("runs/bench_data_aware_speed")
    train, _ = gloss_texts(work)
    model = pela.load(str(base_encoder(work, args.layers, args.width)))
    config = LowRankConfig(param_budget=args.budget, init="whiten")
    began = time.perf_counter()
    probe = {} if args.probe_samples is None else {"probe_samples": args.probe_samples}
    calibration = pela.calibrate(model, train, config, collate_fn=Collator(model), samples=args.samples, **probe)
    calibrated = time.perf_counter()
    stats = {id(m): m for m in calibration.moments.values()}  # layers reading one input share one matrix
    stat_bytes = sum(m.numel() * m.element_size() for m in stats.values())
    student = copy.deepcopy(model)
    compressed = pela.compress(student, config, calibration=calibration)
    done = time.perf_counter()
    tokens = max(calibration.tokens.values())
    result = {"model": f"BertModel {args.layers}x{args.width}", "params": compressed.params_before, "params_after": compressed.params_after,
              "calibration_samples": calibration.samples, "calibration_tokens": tokens, "layers_factorized": len(compressed.factorized),
              "calibrate_seconds": round(calibrated - began, 1), "compress_seconds": round(done - calibrated, 1),
              "total_seconds": round(done - began, 1), "statistics_matrices": len(stats), "statistics_mib": round(stat_bytes / 2**20, 1),
              "threads": torch.get_num_threads(), "probe_samples": sum(len(next(iter(b.values()))) for b in calibration.probe)}
    report(args.name, result)


if __name__ == "__main__":
    main()
