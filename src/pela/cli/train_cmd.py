"""``pela distill`` and ``pela finetune``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from pela.arch import is_causal_lm
from pela.cli.common import (
    ALLOW_PICKLE_HELP,
    CHECKPOINT_HELP,
    LABEL_FIELD_HELP,
    SAVE_DTYPE_HELP,
    TEACHER_CHECKPOINT_HELP,
    TEXT_FIELD_HELP,
    TRUST_HELP,
    WORKERS_HELP,
    _check_eval_flags,
    _check_output,
    _half_precision_note,
    _load_data,
    _opt_str,
    _saved,
    command,
    optional_step,
    out_console,
)
from pela.cli.config_file import setting
from pela.data.collate import Collator
from pela.data.labels import dataset_classes, unlabelled_reason
from pela.data.packing import PackedText
from pela.errors import PelaError
from pela.evaluation.classifier import evaluate
from pela.evaluation.generation import write_generations
from pela.models.saving import is_pela_dir, record_metadata
from pela.models.saving import save_dtype as _save_dtype
from pela.models.sources import load_for_training
from pela.training.distill import DistillConfig
from pela.training.distill import distill as _distill
from pela.training.finetune import FinetuneConfig
from pela.training.finetune import finetune as _finetune
from pela.training.rates import MATCHED, parse_factor_lr
from pela.training.record import training_record
from pela.training.rundir import run_dir
from pela.utils.progress import activity


@command()
def distill(
    student: Path = typer.Option(..., "--student", help="a compressed model directory (from pela compress)"),
    teacher: str = typer.Option(..., "--teacher", help="the original model (timm:NAME, hf:ID, or a directory)"),
    data: Path = typer.Option(..., "--data", help="text (.txt, fortune files, .jsonl/.json/.csv/.tsv, each also .gz; .parquet/.arrow), a folder of them (shards), of images or of .txt files, or Fashion-MNIST idx files"),
    out: Path = typer.Option(..., "--out", help="directory for checkpoints, metrics and the final student"),
    steps: Optional[int] = typer.Option(None, help="optimizer steps (default: one epoch)"),
    epochs: Optional[float] = typer.Option(None, help="epochs over the data, instead of --steps"),
    batch_size: int = typer.Option(32, "--batch-size", help="global batch per optimizer step"),
    lr: float = typer.Option(1e-4, help="peak learning rate (AdamW, warm-up + cosine)"),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="held-out data on which pela compare scores the student at the end (and during training, with eval_every or --keep-best); a language model's perplexity on it too"),
    keep_best: Optional[str] = typer.Option(None, "--keep-best", help="save the student of the best evaluation by this metric, not the last: mean_mse, mean_cosine, output_agreement, or for a language model perplexity (evaluates every epoch unless eval_every says)"),
    pack: Optional[int] = typer.Option(None, "--pack", help="pack the text into sequences of N tokens, documents joined by the "
                                       "tokenizer's end-of-text token (how language models are trained: no padding)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in OUT"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    eval_every: Optional[int] = setting(None, "score the student on --eval-data every N steps and at the end (eval_* rows in metrics.jsonl)"),
    eval_samples: int = setting(256, "examples of --eval-data to score on (a seeded random subset)"),
    patience: Optional[int] = setting(None, "with --keep-best: stop after N evaluations without a better one"),
    alpha: float = setting(1.0, "weight of feature distillation (every block, every real token)"),
    feature_loss: str = setting("relative", "relative: each token's squared error over the teacher's squared feature; mse: PELA's plain MSE (ruled by a pre-LN model's deep blocks and massive activations)"),
    beta: float = setting(0.0, "weight of logit distillation (MSE of the outputs; KL divergence with a temperature)"),
    temperature: Optional[float] = setting(None, "logit distillation as KL divergence of softmax(logits / T), per real token (a language model: next-token distributions); needs beta"),
    task_weight: float = setting(1.0, "weight of the task loss (labelled data with as many classes as the head, and not another set of names than the model's)"),
    gamma: float = setting(0.0, "weight of weight-perturbation regularization"),
    epsilon: float = setting(1e-3, "target of max|BA - W| for the regularization"),
    seed: int = setting(0, "seed of the data order and of everything random"),
    save_every: Optional[int] = setting(None, "checkpoint every N steps"),
    grad_accum: int = setting(1, "micro-batches per step"),
    clip: float = setting(1.0, "gradient-norm clip (0 = off)"),
    mixed_precision: str = setting("auto", "auto (bf16 on GPU), no, bf16, fp16"),
    blocks: Optional[str] = setting(None, "regex naming the blocks to match (default: found automatically)"),
    text_field: Optional[str] = setting(None, TEXT_FIELD_HELP),
    label_field: Optional[str] = setting(None, LABEL_FIELD_HELP + " (for the task loss)"),
    max_length: Optional[int] = setting(None, "truncate text to this many tokens"),
    log_every: int = setting(10, "log the loss every N steps"),
    group_by_length: bool = setting(False, "batch texts of similar length (less padding)"),
    workers: int = setting(0, WORKERS_HELP),
    teacher_checkpoint: Optional[Path] = setting(None, TEACHER_CHECKPOINT_HELP),
    allow_pickle: bool = setting(False, ALLOW_PICKLE_HELP),
    save_dtype: Optional[str] = setting(None, SAVE_DTYPE_HELP),
) -> None:
    """Intermediate pre-training (PELA stage 2): distill the student from the frozen teacher."""
    config = DistillConfig(steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, alpha=alpha, beta=beta, task=task_weight,
                           feature_loss=feature_loss, gamma=gamma, epsilon=epsilon, grad_accum=grad_accum, clip=clip or None, seed=seed, temperature=temperature,
                           mixed_precision=mixed_precision, save_every=save_every, log_every=log_every, blocks=blocks,
                           group_by_length=group_by_length, workers=workers, eval_every=eval_every, keep_best=keep_best,
                           patience=patience)
    _check_distill_flags(student, max_length, pack, eval_samples)
    _check_eval_flags(eval_data, eval_every, keep_best)
    _save_dtype(save_dtype)
    _check_output(out, resume, overwrite, {"--student": student, "--teacher": teacher, "--data": data, "--eval-data": eval_data,
                                           "teacher_checkpoint": teacher_checkpoint})
    ds = _load_data(data, text_field=text_field, label_field=label_field, progress=True)
    held_out = _load_data(eval_data, split="test", text_field=text_field, progress=True) if eval_data else None
    with run_dir(out, resume, overwrite) as run:
        with activity("loading models"):
            student_model = load_for_training(str(student), trust_remote_code=trust_remote_code)  # trains in float32
            teacher_model = load_for_training(teacher, checkpoint=_opt_str(teacher_checkpoint), allow_pickle=allow_pickle,
                                       trust_remote_code=trust_remote_code)
        collate = Collator(student_model, max_length=max_length)
        collate.check(ds, f"--data {data}")
        if held_out is not None:
            collate.check(held_out, f"--eval-data {eval_data}")
        texts = ds
        if pack is not None:
            ds = PackedText(ds, collate.tokenizer, pack)
        info = {"student": str(Path(student).resolve()), "teacher": teacher, "data": str(Path(data).resolve())}
        result = _distill(student_model, teacher_model, ds, config, collate_fn=collate, out=run.path, resume=resume, progress=True,
                          run_info=info, eval_data=held_out, eval_samples=eval_samples)
        main = run.publish(student_model, {"distill": training_record(config, result, student_model, teacher_model)}, save_dtype)
        if is_causal_lm(student_model):  # what the student writes, beside the teacher's
            with optional_step("generations.md"):
                prompts = held_out if held_out is not None else texts
                write_generations(run.path / "generations.md", student_model, teacher_model, prompts, collate.tokenizer)
        if main:
            out_console.print(_distilled(result, keep_best, patience, out))
            _half_precision_note(student_model, save_dtype)


def _check_distill_flags(student: Path, max_length: Optional[int], pack: Optional[int], eval_samples: int) -> None:
    if max_length is not None and max_length < 1:
        raise PelaError(f"max_length must be >= 1, got {max_length}")
    if pack is not None and pack < 2:
        raise PelaError(f"--pack must be at least 2 tokens, got {pack}")
    if eval_samples < 1:
        raise PelaError(f"eval_samples must be >= 1, got {eval_samples}")
    if not is_pela_dir(student):
        raise PelaError(f"--student {student} is not a directory written by pela (run pela compress first)")


def _distilled(result: Any, keep_best: Optional[str], patience: Optional[int], out: Path) -> str:
    """The closing line of ``pela distill``."""
    last = result.history[-1] if result.history else {}
    held = ""
    if result.evals:
        shown = keep_best or "mean_mse"
        score = result.best[shown] if result.best else result.evals[-1][shown]
        held = f"; held-out {shown} {score:.4g}" + (f" (step {result.best['step']}'s student, the best)" if result.best else "")
    early = f" (stopped early: {patience} evaluations without a better {keep_best})" if result.stopped_early else ""
    return (f"distilled {result.steps} steps{early} in {result.seconds:.0f}s ({result.items_per_s:.1f} items/s); "
            f"final loss {last.get('loss', float('nan')):.4g}{held}; student saved to {_saved(out)}")


@command()
def finetune(
    model: str = typer.Argument(..., help="a pela student, or any model source (to compare under one recipe)"),
    data: Path = typer.Option(..., "--data", help="labelled data: a folder of class sub-folders (images or .txt files), Fashion-MNIST idx, or records (CSV/TSV/JSONL/JSON/Parquet/Arrow) with a label"),
    out: Path = typer.Option(..., "--out", help="directory for checkpoints, metrics and the fine-tuned model"),
    steps: Optional[int] = typer.Option(None, help="optimizer steps (default: one epoch)"),
    epochs: Optional[float] = typer.Option(None, help="epochs over the data, instead of --steps"),
    batch_size: int = typer.Option(32, "--batch-size", help="global batch per optimizer step"),
    lr: float = typer.Option(1e-4, help="peak learning rate (AdamW, warm-up + cosine)"),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="labelled data to evaluate on at the end (and during training, with eval_every or --keep-best)"),
    keep_best: Optional[str] = typer.Option(None, "--keep-best", help="save the weights of the best evaluation by this metric, not the last: accuracy, balanced_accuracy, macro_f1, top5 or loss (evaluates every epoch unless eval_every says)"),
    lora: Optional[int] = typer.Option(None, help="train only rank-R LoRA adapters (peft) and the head"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in OUT"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
    eval_every: Optional[int] = setting(None, "evaluate on --eval-data every N steps too (logged as eval_* in metrics.jsonl)"),
    patience: Optional[int] = setting(None, "with --keep-best: stop after N evaluations without a better one"),
    weight_decay: float = setting(0.01, "AdamW's weight decay"),
    seed: int = setting(0, "seed of the data order, the new head and everything random"),
    pooling: Optional[str] = setting(None, "for an added head: mean (masked mean of tokens) or cls (default: a sentence-transformers model's own, else mean)"),
    factor_lr: str = setting(MATCHED, "factored layers' learning rate: matched (each layer's steps on B·A as large as a dense weight's) or a multiple of --lr (1: the same)"),
    grad_accum: int = setting(1, "micro-batches per step"),
    mixed_precision: str = setting("auto", "auto (bf16 on GPU), no, bf16, fp16"),
    max_length: Optional[int] = setting(None, "truncate text to this many tokens"),
    text_field: Optional[str] = setting(None, TEXT_FIELD_HELP),
    label_field: Optional[str] = setting(None, LABEL_FIELD_HELP),
    save_every: Optional[int] = setting(None, "checkpoint every N steps"),
    random_init: bool = setting(False, "no pretrained weights (the control)"),
    checkpoint: Optional[Path] = setting(None, CHECKPOINT_HELP),
    allow_pickle: bool = setting(False, ALLOW_PICKLE_HELP),
    log_every: int = setting(10, "log the loss every N steps"),
    group_by_length: bool = setting(False, "batch texts of similar length (less padding)"),
    workers: int = setting(0, WORKERS_HELP),
    save_dtype: Optional[str] = setting(None, SAVE_DTYPE_HELP),
) -> None:
    """Fine-tune a model for classification (PELA stage 3); a head is added or resized to the data's classes."""

    config = FinetuneConfig(steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                            pooling=pooling, lora=lora, grad_accum=grad_accum, mixed_precision=mixed_precision,
                            save_every=save_every, log_every=log_every, group_by_length=group_by_length, workers=workers,
                            eval_every=eval_every, keep_best=keep_best, patience=patience, factor_lr=parse_factor_lr(factor_lr))
    _check_eval_flags(eval_data, eval_every, keep_best)
    if max_length is not None and max_length < 1:
        raise PelaError(f"max_length must be >= 1, got {max_length}")
    _save_dtype(save_dtype)
    _check_output(out, resume, overwrite, {"model": model, "--data": data, "--eval-data": eval_data, "checkpoint": checkpoint})
    ds = _load_data(data, text_field=text_field, label_field=label_field, progress=True)
    test = None
    if eval_data:
        test = _load_data(eval_data, split="test", text_field=text_field, label_field=label_field, classes=dataset_classes(ds),
                          progress=True)
        if dataset_classes(test) is None:
            raise PelaError(f"--eval-data {eval_data}: evaluation needs labelled data: {unlabelled_reason(test)}")
    with run_dir(out, resume, overwrite) as run:
        with activity(f"loading {model}"):
            net = load_for_training(model, checkpoint=_opt_str(checkpoint), random_init=random_init, allow_pickle=allow_pickle,
                             trust_remote_code=trust_remote_code)
        collate = Collator(net, max_length=max_length)
        collate.check(ds, f"--data {data}")
        if test is not None:
            collate.check(test, f"--eval-data {eval_data}")
        tuned, result = _finetune(net, ds, config, collate_fn=collate, out=run.path, resume=resume, progress=True,
                                  run_info={"model": model, "data": str(Path(data).resolve())},
                                  eval_data=test if (eval_every or keep_best) else None)
        summary, record = _finetune_summary(result), training_record(config, result, tuned)
        main = run.publish(tuned, {"finetune": record}, save_dtype)
        if test is not None:  # the saved model's score: an extra, after the model is safe
            with optional_step("the final evaluation on --eval-data"):
                summary["eval"] = evaluate(tuned, test, collate_fn=Collator(tuned, max_length=max_length), workers=workers,
                                           progress=True)
                if main:
                    record_metadata(run.path, {"finetune": {**record, "eval": summary["eval"]}})
        if main:
            _finetuned(summary, result, keep_best, patience, out, as_json)
            _half_precision_note(net, save_dtype)


def _finetune_summary(result: Any) -> dict[str, Any]:
    """What ``--json`` prints of a fine-tuning run."""
    summary = {"steps": result.steps, "seconds": result.seconds, "items_per_s": result.items_per_s,
               "final": result.history[-1] if result.history else {}}
    if result.evals:
        summary["evals"] = result.evals
    if result.best is not None:
        summary["best"] = result.best
    summary["stopped_early"] = result.stopped_early
    return summary


def _finetuned(summary: dict[str, Any], result: Any, keep_best: Optional[str], patience: Optional[int], out: Path,
               as_json: bool) -> None:
    """The closing line of ``pela finetune`` (or its summary as JSON)."""
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    acc = f"; accuracy {summary['eval']['accuracy']:.4f} on {summary['eval']['samples']} examples" if "eval" in summary else ""
    if result.best is not None:
        acc += f"; kept step {result.best['step']}'s weights, the best evaluation by {keep_best}"
    early = f" (stopped early: {patience} evaluations without a better {keep_best})" if result.stopped_early else ""
    out_console.print(f"fine-tuned {result.steps} steps{early} in {result.seconds:.0f}s{acc}; saved to {_saved(out)}")
