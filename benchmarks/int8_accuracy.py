"""int8 on top of a student, on the demo's task: accuracy in ONNX Runtime and in PyTorch (torchao),
float32 against int8.

    .venv/bin/python -m benchmarks.int8_accuracy

all-MiniLM-L6-v2 and its k=2 student (pela's factorization: whitened factors, ranks allocated at
k's size from the unlabeled training glosses; not distilled, to keep the run short) are fine-tuned
on the demo's task (`benchmarks/harness.py`), exported (`pela.export_onnx`, float32 and
``int8=True``) and scored on the test glosses by ONNX Runtime, beside PyTorch's score, and
quantized in PyTorch (`pela.quantize_int8`, saved and its file measured) and scored there.
Results: benchmarks/results/int8_accuracy.json.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import replace
from pathlib import Path

import torch

import pela
from benchmarks._results import report
from benchmarks.harness import StudySettings, finetune_model, minilm_dir, study_data
from pela.data.collate import Collator
from pela.deploy.onnx import onnx_feed
from pela.models.saving import WEIGHTS_NAME
from pela.models.sources import load_for_training

WORK = Path("runs/bench_int8_accuracy")


def ort_accuracy(path: Path, model, data, max_length: int, batch_size: int = 64) -> float:
    """Top-1 accuracy of the ONNX graph at ``path`` on ``data``, batched as pela evaluates."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    collate = Collator(model, max_length=max_length)
    right = 0
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
        logits = session.run(None, onnx_feed(session, batch))[0]
        right += int((torch.from_numpy(logits).argmax(-1) == batch["labels"]).sum())
    return right / len(data)


def student(settings: StudySettings, data, ratio: float):
    model = load_for_training(str(minilm_dir()))
    config = pela.recipe(model, ratio=ratio, calibrated=True)
    collate = Collator(model, max_length=settings.max_length)
    calibration = pela.calibrate(model, data.unlabeled, config, collate_fn=collate,
                                 samples=settings.calib_samples)
    pela.compress(model, config, calibration=calibration)
    return model


def score(name: str, model, data, settings: StudySettings) -> dict:
    tuned, _ = finetune_model(model, data, settings)
    tuned.eval()
    torch_acc = pela.evaluate(tuned, data.test,
                              collate_fn=Collator(tuned, max_length=settings.max_length))
    row = {"params": sum(p.numel() for p in tuned.parameters()),
           "pytorch": torch_acc["accuracy"]}
    int8 = pela.quantize_int8(copy.deepcopy(tuned))  # torchao: int8 in PyTorch
    row["pytorch int8"] = pela.evaluate(
        int8, data.test, collate_fn=Collator(int8, max_length=settings.max_length))["accuracy"]
    saved = pela.save_pretrained(int8, WORK / f"{name}-pytorch-int8", overwrite=True)
    row["pytorch int8 file MB"] = round((saved / WEIGHTS_NAME).stat().st_size / 1e6, 2)
    for kind, int8 in (("onnxruntime", False), ("onnxruntime int8", True)):
        export = pela.export_onnx(tuned, WORK / f"{name}-{kind.replace(' ', '-')}",
                                  overwrite=True, int8=int8)
        row[kind] = ort_accuracy(export.path, tuned, data.test, settings.max_length)
        row[f"{kind} file MB"] = round(export.path.stat().st_size / 1e6, 2)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ratio", type=float, default=2.0)
    p.add_argument("--train", type=int, default=StudySettings.train)
    p.add_argument("--test", type=int, default=StudySettings.test)
    p.add_argument("--calib-samples", type=int, default=StudySettings.calib_samples)
    args = p.parse_args()
    settings = replace(StudySettings(), train=args.train, test=args.test,
                       calib_samples=args.calib_samples)
    data = study_data(WORK / "data", settings)
    rows = {"teacher": score("teacher", load_for_training(str(minilm_dir())), data, settings),
            f"k={args.ratio:g} student": score("student", student(settings, data, args.ratio),
                                               data, settings)}
    report("int8_accuracy", {"ratio": args.ratio, "train": len(data.train),
                             "test": len(data.test), "rows": rows})


if __name__ == "__main__":
    main()
