"""Keeping the best evaluation's weights (`--keep-best`) against keeping the last, on real data.

MiniLM (all-MiniLM-L6-v2, offline) compressed at k=2, fine-tuned on WordNet glosses (the demo's
task: 45 lexicographer categories) without distillation. The demo's training split is cut into
train and dev (disjoint synsets); the test glosses are the demo's test split. The same run is done
twice, with evaluations on dev every ``--eval-every`` steps: once keeping the last weights, once
keeping the best by dev accuracy (`FinetuneConfig(keep_best="accuracy")`); with ``--patience N``, a
third time, stopping after N evaluations without a better one. Evaluations do not change
the training (tests/training/test_periodic_evaluation.py checks that bitwise), so the two runs differ only in which
weights they return. Both are then scored on test.

    .venv/bin/python -m benchmarks.keep_best            # about 6 minutes on a 2-core CPU
    .venv/bin/python -m benchmarks.keep_best --train 600 --epochs 12 --eval-every 19 --patience 3 --name keep_best_small

Writes benchmarks/results/keep_best.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import pela
from benchmarks._results import report
from benchmarks.harness import minilm_dir, wordnet_glosses
from pela import FinetuneConfig, LowRankConfig
from pela.data.collate import Collator
from pela.data.load import load_dataset


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--dev", type=int, default=1000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=3e-4)  # the demo's fine-tuning rate
    p.add_argument("--eval-every", type=int, default=47)  # about twice an epoch of 3,000 at batch 32
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patience", type=int, default=None, help="also a third run that stops after N evaluations without a better one")
    p.add_argument("--name", default="keep_best", help="results file name (benchmarks/results/NAME.json)")
    args = p.parse_args()

    work = Path("runs/bench_keep_best")
    work.mkdir(parents=True, exist_ok=True)
    glosses = wordnet_glosses()
    classes = [f"{c:02d}" for c in sorted({c for _, c, _ in glosses})]
    rng = random.Random(0)
    pool = rng.sample([g for g in glosses if g[2] == "train"], args.train + args.dev)
    splits = {"train": pool[:args.train], "dev": pool[args.train:],
              "test": rng.sample([g for g in glosses if g[2] == "test"], args.test)}
    data = {}
    for name, rows in splits.items():
        path = work / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"text": t, "label": f"{c:02d}"}) + "\n" for t, c, _ in rows))
        data[name] = load_dataset(path, classes=classes)

    result: dict = {"settings": vars(args)}
    runs = [("last", None, None), ("best", "accuracy", None)] + ([("patience", "accuracy", args.patience)] if args.patience else [])
    for label, keep, patience in runs:
        model = pela.load(str(minilm_dir()))
        pela.compress(model, LowRankConfig(ratio=2))
        config = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
                                keep_best=keep, patience=patience, group_by_length=True)
        began = time.perf_counter()
        tuned, res = pela.finetune(model, data["train"], config, num_classes=len(classes), eval_data=data["dev"],
                                   collate_fn=Collator(model, max_length=64), progress=True)
        test = pela.evaluate(tuned, data["test"], collate_fn=Collator(tuned, max_length=64))
        result[label] = {
            "dev": [{"step": e["step"], "accuracy": e["accuracy"], "loss": e["loss"]} for e in res.evals],
            "kept_step": res.best["step"] if res.best else res.steps, "trained_steps": res.steps,
            "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"], "test_loss": test["loss"],
            "seconds": time.perf_counter() - began}
    report(args.name, result)


if __name__ == "__main__":
    main()
