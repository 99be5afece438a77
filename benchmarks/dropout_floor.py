"""How low can distillation's feature loss go? The floor that dropout sets, and where students stand against it.

The student distills in training mode (dropout on) against the teacher in eval mode, so the loss the
progress bar shows cannot reach zero: even the teacher itself, in training mode, is that far from its
own eval-mode features. This measures that floor (the teacher in train mode against itself in eval
mode) and, for each ``--student``, its loss against the teacher with the student in train mode (what
distillation reports) and in eval mode (what the student will compute once trained):

    nice .venv/bin/python -m benchmarks.dropout_floor [--model SOURCE] [--data FILE | --austen] [--student DIR ...]
        [--samples 256] [--name dropout_floor]

Defaults: the offline all-MiniLM-L6-v2 and WordNet's held-out glosses (``--austen``: paragraphs of Jane
Austen's *Persuasion*, prose unlike what the demo's students were calibrated and distilled on). Losses are pela's
(`pela.features`: ``relative`` and ``mse``), each block's output, real tokens only, averaged over blocks and batches.
Results: benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import pela
from benchmarks._results import report
from benchmarks.austen import HELD_OUT, novels
from benchmarks.harness import gloss_texts, minilm_dir
from pela import arch
from pela.data.collate import Collator
from pela.data.load import load_dataset
from pela.evaluation.compare import eval_subset
from pela.features import FEATURE_LOSSES, BlockCapture, feature_loss


def features(model, names, batch, train: bool, seed: int) -> list[torch.Tensor]:
    """Each block's output on ``batch``, in training mode (dropout drawn from ``seed``) or eval mode."""
    model.train(train)
    torch.manual_seed(seed)
    capture = BlockCapture(model, names)
    try:
        with torch.no_grad():
            model(**batch)
        return capture.take()
    finally:
        capture.remove()


def losses(teacher, students: dict[str, object], loader, names,
           modes: tuple[str, ...] = ("train_mode", "eval_mode")) -> dict[str | None, dict[str, dict[str, float]]]:
    """Mean over batches of each feature loss against the eval-mode teacher: the floor (key None: the teacher in train mode) and
    each student in each of ``modes``. The teacher runs once per batch for all of them."""
    runs = [(None, "train_mode", teacher, True)] + [(name, mode, m, mode == "train_mode") for name, m in students.items() for mode in modes]
    sums = {(name, mode): dict.fromkeys(FEATURE_LOSSES, 0.0) for name, mode, _, _ in runs}
    for i, batch in enumerate(loader):
        batch = {k: v for k, v in batch.items() if k != "labels"}
        t = features(teacher, names, batch, False, i)
        mask = batch.get("attention_mask")
        for name, mode, model, train in runs:
            s = features(model, names, batch, train, i)  # the same dropout draws for every model in train mode
            for kind, total in sums[name, mode].items():
                sums[name, mode][kind] = total + feature_loss(s, t, mask, kind=kind).item()
    out: dict[str | None, dict[str, dict[str, float]]] = {}
    for (name, mode), total in sums.items():
        out.setdefault(name, {})[mode] = {kind: v / len(loader) for kind, v in total.items()}
    return out


def text(tmp: Path, path: Path | None = None, austen: bool = False):
    """The examples to measure on: ``path``, paragraphs of *Persuasion* (``austen``: prose unlike the glosses the
    students were calibrated and distilled on), or WordNet's held-out glosses; written under ``tmp`` if need be."""
    if austen:
        path = tmp / "persuasion.txt"
        path.write_text("\n".join(par.replace("\n", " ") for par in novels()[HELD_OUT] if len(par) > 80) + "\n")
    return load_dataset(path) if path else gloss_texts(tmp)[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="the teacher (default: the offline all-MiniLM-L6-v2)")
    p.add_argument("--data", type=Path, help="text to measure on (default: WordNet's held-out glosses)")
    p.add_argument("--austen", action="store_true", help="measure on prose instead: paragraphs of Persuasion (`austen.py`)")
    p.add_argument("--student", action="append", default=[], help="a saved student of the teacher (repeatable)")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--name", default="dropout_floor", help="result name (benchmarks/results/NAME.json)")
    args = p.parse_args()
    source = args.model or str(minilm_dir())
    with tempfile.TemporaryDirectory() as tmp:  # the default text is written here, and read while it is measured
        data = text(Path(tmp), args.data, args.austen)
        teacher = pela.load(source)
        names = arch.find_blocks(teacher)
        loader = DataLoader(eval_subset(data, args.samples), batch_size=args.batch_size, collate_fn=Collator(teacher))
        measured = losses(teacher, {path: pela.load(path) for path in args.student}, loader, names)
        result = {"model": source, "samples": args.samples, "data": "Persuasion" if args.austen else str(args.data or "WordNet held-out glosses"),
                  "floor": measured.pop(None)["train_mode"], "students": measured}
    print(f"floor (the teacher in train mode against itself): {result['floor']}")
    for path, row in measured.items():
        print(f"{path}: train mode {row['train_mode']}, eval mode {row['eval_mode']}")
    report(args.name, result)


if __name__ == "__main__":
    main()
