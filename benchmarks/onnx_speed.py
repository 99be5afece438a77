"""PyTorch and ONNX Runtime, float32 and int8, side by side: an original and its k=2 student.

    .venv/bin/python -m benchmarks.onnx_speed        # all-MiniLM-L6-v2, and ViT-B/16 (random init)

Each model is loaded, a copy compressed (`pela.compress`, plain SVD at ``--ratio``: the speed of any
student at that size) and both exported (`pela.export_onnx`, which checks ONNX Runtime's outputs
against PyTorch's), in float32 and with int8 weights and activations (``int8=True``). The six runs
(original and student; PyTorch, ONNX Runtime, ONNX Runtime int8) are timed in interleaved rounds on
the same batch; each run's median round counts, and every ratio is of runs measured side by side.
Results: benchmarks/results/onnx_speed.json.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

import pela
from benchmarks._results import report
from benchmarks.harness import minilm_dir
from pela.deploy.onnx import named_inputs, onnx_feed
from pela.deploy.onnx_runs import cpu_session
from pela.models.sources import load_for_training

DEFAULT_MODELS = ("minilm", "timm:vit_base_patch16_224")


def _ort_run(session, inputs: dict):
    feed = onnx_feed(session, inputs)
    return lambda: session.run(None, feed)


def _torch_run(model, inputs: dict, positional: bool):
    args = tuple(inputs.values())

    def run():
        with torch.inference_mode():
            return model(*args) if positional else model(**inputs)

    return run


RUNTIMES = ("pytorch", "onnxruntime", "onnxruntime int8")


def _mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.parent.glob("model.onnx*")) / 1e6, 2)


def measure(source: str, ratio: float, batch_size: int, seq_len: int, rounds: int, iters: int,
            work: Path) -> dict:
    original = load_for_training(source, random_init=source.startswith("timm:")).eval()
    student = copy.deepcopy(original)
    pela.compress(student, pela.LowRankConfig(ratio=ratio))
    models = {"original": original, "student": student}
    exports, int8 = {}, {}
    for name, m in models.items():
        exports[name] = pela.export_onnx(m, work / name, overwrite=True)
        int8[name] = pela.export_onnx(m, work / f"{name}-int8", overwrite=True, int8=True)
    inputs, positional = named_inputs(original, batch_size, seq_len)
    runs = {}
    for name, model in models.items():
        runs[f"{name} / pytorch"] = _torch_run(model, inputs, positional)
        runs[f"{name} / onnxruntime"] = _ort_run(cpu_session(exports[name].path), inputs)
        runs[f"{name} / onnxruntime int8"] = _ort_run(cpu_session(int8[name].path), inputs)
    for fn in runs.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for key, fn in runs.items():
            began = time.perf_counter()
            for _ in range(iters):
                fn()
            times[key].append((time.perf_counter() - began) / iters)
    per_s = {k: batch_size / statistics.median(v) for k, v in times.items()}
    return {
        "inputs": {k: list(v.shape) for k, v in inputs.items()},
        "params": {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()},
        "onnx_max_abs_difference": {n: e.max_abs_difference for n, e in exports.items()},
        "int8_relative_error": {n: round(e.int8_relative_error, 5) for n, e in int8.items()},
        "file_mb": {**{n: _mb(e.path) for n, e in exports.items()},
                    **{f"{n} int8": _mb(e.path) for n, e in int8.items()}},
        "items_per_s": {k: round(v, 2) for k, v in per_s.items()},
        "student_over_original": {
            rt: round(per_s[f"student / {rt}"] / per_s[f"original / {rt}"], 3)
            for rt in RUNTIMES},
        "over_original_pytorch": {
            k: round(v / per_s["original / pytorch"], 3) for k, v in per_s.items()},
        "rounds_ms": {k: [round(1000 * t, 1) for t in v] for k, v in times.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", help="a model source, repeatable (default: "
                   "all-MiniLM-L6-v2 and timm:vit_base_patch16_224, random init)")
    p.add_argument("--ratio", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128, help="text models' sequence length")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=3, help="passes per round")
    args = p.parse_args()
    sources = args.model or list(DEFAULT_MODELS)
    result = {"ratio": args.ratio, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
              "models": {}}
    with tempfile.TemporaryDirectory() as work:
        for source in sources:
            path = str(minilm_dir()) if source == "minilm" else source
            result["models"][source] = measure(path, args.ratio, args.batch_size, args.seq_len,
                                               args.rounds, args.iters, Path(work) / "exports")
    report("onnx_speed", result)


if __name__ == "__main__":
    main()
