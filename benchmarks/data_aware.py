"""Data-aware factorization vs plain SVD on MiniLM (offline), at the same parameter count.

Stage 1 (about a minute): compress all-MiniLM-L6-v2 four ways at the size of k=2 — plain SVD (the
paper), whitened SVD, and each with sensitivity-weighted global rank allocation (`param_budget`
set to exactly the fraction k=2 keeps) — and measure the mean per-block feature MSE to the teacher
on 512 held-out WordNet glosses (real tokens only). Calibration: 512 training glosses.
Stage 2 (`--downstream`, ~20 min on a 2-core CPU): take plain SVD and whiten + allocation through the
demo's pipeline (300 distillation steps, then the demo's fine-tuning recipe), also fine-tuned without
distillation, and report held-out MSE after distillation and test accuracy after fine-tuning.

    .venv/bin/python -m benchmarks.data_aware [--downstream]
    .venv/bin/python -m benchmarks.data_aware --weighting   # why allocation measures sensitivity

Writes benchmarks/results/data_aware.json (`--weighting`: data_aware_weighting.json, the same budget
allocated by the layers' own relative errors alone, as `pela.compression.allocate.allocate(weights=None)` does).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import pela
from benchmarks._results import report
from benchmarks.harness import (
    StudySettings,
    distill_student,
    finetune_and_evaluate,
    gloss_texts,
    minilm_dir,
    study_data,
)
from pela import LowRankConfig
from pela.data.collate import Collator


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calib-samples", type=int, default=512)
    p.add_argument("--heldout", type=int, default=512)
    p.add_argument("--downstream", action="store_true", help="also distill and fine-tune (about 20 minutes on CPU)")
    p.add_argument("--weighting", action="store_true", help="only compare allocation weightings")
    p.add_argument("--probe-samples", type=int, default=None, help="calibration examples each sensitivity probe runs (default: pela's)")
    p.add_argument("--sequential", action="store_true", help="add the rows factorized sequentially (LowRankConfig(sequential=True))")
    p.add_argument("--sensitivity", choices=("replay", "gradient"), default="replay", help="how allocation measures layer sensitivity")
    p.add_argument("--ratio", type=float, default=2.0, help="every student's size: that of plain SVD at this ratio")
    p.add_argument("--name", default="data_aware", help="results file name (benchmarks/results/NAME.json)")
    args = p.parse_args()
    work = Path("runs/bench_data_aware")
    train, heldout = gloss_texts(work)

    teacher = pela.load(str(minilm_dir()))
    collate = Collator(teacher, max_length=64)
    start = time.perf_counter()
    probe = {} if args.probe_samples is None else {"probe_samples": args.probe_samples}
    keep = LowRankConfig(init="whiten", sequential=True) if args.sequential else None  # keeps the batches to run again
    calibration = pela.calibrate(teacher, train, keep, collate_fn=collate, samples=args.calib_samples, **probe)
    calib_seconds = time.perf_counter() - start

    plain = copy.deepcopy(teacher)
    plain_report = pela.compress(plain, LowRankConfig(ratio=args.ratio))
    factorizable = sum(r.in_features * r.out_features for r in plain_report.factorized)
    budget = sum(r.rank * (r.in_features + r.out_features) for r in plain_report.factorized) / factorizable
    configs = {"svd": LowRankConfig(ratio=args.ratio), "whiten": LowRankConfig(ratio=args.ratio, init="whiten"),
               "svd+allocation": LowRankConfig(param_budget=budget, sensitivity=args.sensitivity),
               "whiten+allocation": LowRankConfig(param_budget=budget, init="whiten", sensitivity=args.sensitivity)}
    if args.sequential:
        configs.update({"whiten+sequential": LowRankConfig(ratio=args.ratio, init="whiten", sequential=True),
                        "whiten+allocation+sequential": LowRankConfig(param_budget=budget, init="whiten", sequential=True,
                                                                      sensitivity=args.sensitivity)})
    if args.weighting:
        from pela.compression import (
            compress as factorize,  # the module, whose allocate compress calls
        )

        measured = factorize.allocate

        def own_errors(shapes, spectra, budget, align, weights):  # ignore the measured sensitivities
            return measured(shapes, spectra, budget, align)

        factorize.allocate = own_errors
        configs = {f"{name} (own relative errors)": config for name, config in configs.items() if "allocation" in name}
    students, rows = {}, {}
    for name, config in configs.items():
        student = copy.deepcopy(teacher)
        start = time.perf_counter()
        rep = pela.compress(student, config, calibration=calibration if name != "svd" else None)
        seconds = time.perf_counter() - start
        result = pela.compare(student, teacher, heldout, collate_fn=collate, samples=args.heldout)
        students[name] = student
        rows[name] = {"params": rep.params_after, "linear_params": rep.linear_params_after, "compress_seconds": round(seconds, 2),
                      "mse": result["mean_mse"], "cosine": result["mean_cosine"], "ranks": [r.rank for r in rep.factorized]}
        print(f"{name:18s} params {rep.params_after:,}  held-out MSE {result['mean_mse']:.5f}  ({seconds:.1f}s)", flush=True)
    if args.weighting:
        for name, row in rows.items():
            row["mse_vs_plain_svd_k2"] = row["mse"] / pela.compare(plain, teacher, heldout, collate_fn=collate, samples=args.heldout)["mean_mse"]
        report("data_aware_weighting", {"model": "all-MiniLM-L6-v2", "param_budget": budget, "rows": rows})
        return
    for row in rows.values():
        row["mse_vs_svd"] = row["mse"] / rows["svd"]["mse"]
    summary = {"model": "all-MiniLM-L6-v2", "param_budget": budget, "calib_samples": calibration.samples,
               "heldout_samples": args.heldout, "calibrate_seconds": round(calib_seconds, 2),
               "calibrate_plus_whiten_allocation_seconds": round(calib_seconds + rows["whiten+allocation"]["compress_seconds"], 2),
               "fresh": rows}

    if args.downstream:  # the demo's data, distillation and fine-tuning, for plain SVD and the best data-aware student
        settings = StudySettings()
        data = study_data(work / "demo", settings)
        demo_calibration = pela.calibrate(teacher, data.unlabeled, collate_fn=collate, samples=args.calib_samples, **probe)
        downstream = {}
        for name in ("svd", "whiten+allocation"):
            student = copy.deepcopy(teacher)
            pela.compress(student, configs[name], calibration=demo_calibration if name != "svd" else None)
            fresh, _ = finetune_and_evaluate(copy.deepcopy(student), data, settings)
            distilled, _ = distill_student(student, data, settings)
            after = pela.compare(distilled, teacher, heldout, collate_fn=collate, samples=args.heldout)
            tuned, _ = finetune_and_evaluate(distilled, data, settings)
            downstream[name] = {"accuracy_no_distill": fresh["accuracy"], "mse_after_distill": after["mean_mse"],
                                "accuracy_after_distill": tuned["accuracy"], "params": tuned["params"]}
            print(name, downstream[name], flush=True)
        w, s = downstream["whiten+allocation"], downstream["svd"]
        summary["downstream"] = {"settings": settings.__dict__, "rows": downstream,
                                 "accuracy_gain_after_distill": w["accuracy_after_distill"] - s["accuracy_after_distill"],
                                 "accuracy_gain_no_distill": w["accuracy_no_distill"] - s["accuracy_no_distill"],
                                 "mse_after_distill_ratio": w["mse_after_distill"] / s["mse_after_distill"]}
    report(args.name, {**summary, "probe_samples": calibration.probe and sum(len(next(iter(b.values()))) for b in calibration.probe)})


if __name__ == "__main__":
    main()
