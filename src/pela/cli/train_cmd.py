"""``pela distill`` and ``pela finetune``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from pela.cli.common import (
    ALLOW_PICKLE_HELP,
    CHECKPOINT_HELP,
    LABEL_FIELD_HELP,
    SAVE_DTYPE_HELP,
    TEACHER_CHECKPOINT_HELP,
    TEXT_FIELD_HELP,
    TRUST_HELP,
    WORKERS_HELP,
    _check_counts,
    _check_eval_flags,
    _check_output,
    _check_pack,
    _collator,
    _generations,
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

STUDENT_HELP = "a compressed model directory (from pela compress)"
TEACHER_HELP = "the original model (timm:NAME, hf:ID, or a directory)"
OUT_HELP = "directory for checkpoints, metrics and the final student"
DATA_HELP = (
    "text (.txt, fortune files, .jsonl/.json/.csv/.tsv, each also .gz; .parquet/.arrow), a folder "
    "of them (shards), of images or of .txt files, or Fashion-MNIST idx files"
)
EVAL_DATA_HELP = (
    "held-out data on which pela compare scores the student at the end (and during training, with "
    "eval_every or --keep-best); a language model's perplexity on it too"
)
KEEP_BEST_HELP = (
    "save the student of the best evaluation by this metric, not the last: mean_mse, mean_cosine, "
    "output_agreement, or for a language model perplexity (evaluates every epoch unless eval_every "
    "says)"
)
PACK_HELP = (
    "pack the text into sequences of N tokens, documents joined by the tokenizer's end-of-text "
    "token (how language models are trained: no padding)"
)
FEATURE_LOSS_HELP = (
    "relative: each token's squared error over the teacher's squared feature; mse: PELA's plain "
    "MSE (ruled by a pre-LN model's deep blocks and massive activations)"
)
TEMPERATURE_HELP = (
    "logit distillation as KL divergence of softmax(logits / T), per real token (a language "
    "model: next-token distributions); needs beta"
)
TASK_HELP = (
    "weight of the task loss (labelled data with as many classes as the head, and not another set "
    "of names than the model's)"
)
EVAL_EVERY_HELP = "evaluate on --eval-data every N steps and at the end (eval_* rows in metrics)"
PATIENCE_HELP = "with --keep-best: stop after N evaluations without a better one"
LR_HELP = "peak learning rate (AdamW, warm-up + cosine)"
MIXED_HELP = "auto (bf16 on GPU), no, bf16, fp16"


@command()
def distill(
    student: Path = typer.Option(..., "--student", help=STUDENT_HELP),
    teacher: str = typer.Option(..., "--teacher", help=TEACHER_HELP),
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    steps: Optional[int] = typer.Option(None, help="optimizer steps (default: one epoch)"),
    epochs: Optional[float] = typer.Option(None, help="epochs over the data, instead of --steps"),
    batch_size: int = typer.Option(32, "--batch-size", help="global batch per optimizer step"),
    lr: float = typer.Option(1e-4, help=LR_HELP),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help=EVAL_DATA_HELP),
    keep_best: Optional[str] = typer.Option(None, "--keep-best", help=KEEP_BEST_HELP),
    pack: Optional[int] = typer.Option(None, "--pack", help=PACK_HELP),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in OUT"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    eval_every: Optional[int] = setting(None, EVAL_EVERY_HELP),
    eval_samples: int = setting(256, "examples of --eval-data to score (a seeded random subset)"),
    patience: Optional[int] = setting(None, PATIENCE_HELP),
    alpha: float = setting(1.0, "weight of feature distillation (every block, every real token)"),
    feature_loss: str = setting("relative", FEATURE_LOSS_HELP),
    beta: float = setting(0.0, "weight of logit distillation (MSE; with a temperature, KL)"),
    temperature: Optional[float] = setting(None, TEMPERATURE_HELP),
    task_weight: float = setting(1.0, TASK_HELP),
    gamma: float = setting(0.0, "weight of weight-perturbation regularization"),
    epsilon: float = setting(1e-3, "target of max|BA - W| for the regularization"),
    seed: int = setting(0, "seed of the data order and of everything random"),
    save_every: Optional[int] = setting(None, "checkpoint every N steps"),
    grad_accum: int = setting(1, "micro-batches per step"),
    clip: float = setting(1.0, "gradient-norm clip (0 = off)"),
    mixed_precision: str = setting("auto", MIXED_HELP),
    blocks: Optional[str] = setting(None, "regex naming the blocks to match (default: found)"),
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
    config = DistillConfig(
        steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, alpha=alpha, beta=beta,
        task=task_weight, feature_loss=feature_loss, gamma=gamma, epsilon=epsilon,
        grad_accum=grad_accum, clip=clip or None, seed=seed, temperature=temperature,
        mixed_precision=mixed_precision, save_every=save_every, log_every=log_every, blocks=blocks,
        group_by_length=group_by_length, workers=workers, eval_every=eval_every,
        keep_best=keep_best, patience=patience,
    )
    _check_distill_flags(student, max_length, pack, eval_samples)
    _check_eval_flags(eval_data, eval_every, keep_best)
    _save_dtype(save_dtype)
    inputs = {"--student": student, "--teacher": teacher, "--data": data, "--eval-data": eval_data,
              "teacher_checkpoint": teacher_checkpoint}
    _check_output(out, resume, overwrite, inputs)
    ds = _load_data(data, text_field=text_field, label_field=label_field, progress=True)
    held_out = None
    if eval_data:
        held_out = _load_data(eval_data, split="test", text_field=text_field, progress=True)
    with run_dir(out, resume, overwrite) as run:
        student_model, teacher_model = _load_pair(student, teacher, teacher_checkpoint,
                                                  allow_pickle, trust_remote_code)
        collate = _collator(student_model, max_length, {f"--data {data}": ds,
                                                         f"--eval-data {eval_data}": held_out})
        train = ds if pack is None else PackedText(ds, collate.tokenizer, pack)
        info = {"student": str(Path(student).resolve()), "teacher": teacher,
                "data": str(Path(data).resolve())}
        result = _distill(student_model, teacher_model, train, config, collate_fn=collate,
                          out=run.path, resume=resume, progress=True, run_info=info,
                          eval_data=held_out, eval_samples=eval_samples)
        record = training_record(config, result, student_model, teacher_model)
        main = run.publish(student_model, {"distill": record}, save_dtype)
        prompts = held_out if held_out is not None else ds
        _generations(run.path, student_model, teacher_model, prompts, collate)
        if main:
            out_console.print(_distilled(result, keep_best, patience, out))
            _half_precision_note(student_model, save_dtype)


def _load_pair(student: Path, teacher: str, teacher_checkpoint: Optional[Path],
               allow_pickle: bool, trust_remote_code: bool) -> tuple[Any, Any]:
    with activity("loading models"):  # the student trains in float32
        student_model = load_for_training(str(student), trust_remote_code=trust_remote_code)
        teacher_model = load_for_training(
            teacher, checkpoint=_opt_str(teacher_checkpoint), allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code)
    return student_model, teacher_model


def _check_distill_flags(student: Path, max_length: Optional[int], pack: Optional[int],
                         eval_samples: int) -> None:
    _check_counts({"max_length": max_length})
    _check_pack(pack)
    _check_counts({"eval_samples": eval_samples})
    if not is_pela_dir(student):
        raise PelaError(f"--student {student} is not a directory written by pela (run pela "
                        "compress first)")


def _distilled(result: Any, keep_best: Optional[str], patience: Optional[int], out: Path) -> str:
    """The closing line of ``pela distill``."""
    last = result.history[-1] if result.history else {}
    held = ""
    if result.evals:
        shown = keep_best or "mean_mse"
        score = result.best[shown] if result.best else result.evals[-1][shown]
        held = f"; held-out {shown} {score:.4g}"
        if result.best:
            held += f" (step {result.best['step']}'s student, the best)"
    return (f"distilled {result.steps} steps{_early(result, patience, keep_best)} in "
            f"{result.seconds:.0f}s ({result.items_per_s:.1f} items/s); final loss "
            f"{last.get('loss', float('nan')):.4g}{held}; student saved to {_saved(out)}")


def _early(result: Any, patience: Optional[int], keep_best: Optional[str]) -> str:
    if not result.stopped_early:
        return ""
    return f" (stopped early: {patience} evaluations without a better {keep_best})"


LABELLED_HELP = (
    "labelled data: a folder of class sub-folders (images or .txt files), Fashion-MNIST idx, or "
    "records (CSV/TSV/JSONL/JSON/Parquet/Arrow) with a label"
)
FT_EVAL_DATA_HELP = (
    "labelled data to evaluate on at the end (and during training, with eval_every or --keep-best)"
)
FT_KEEP_BEST_HELP = (
    "save the weights of the best evaluation by this metric, not the last: accuracy, "
    "balanced_accuracy, macro_f1, top5 or loss (evaluates every epoch unless eval_every says)"
)
POOLING_HELP = (
    "for an added head: mean (masked mean of tokens) or cls (default: a sentence-transformers "
    "model's own, else mean)"
)
FACTOR_LR_HELP = (
    "factored layers' learning rate: matched (each layer's steps on B·A as large as a dense "
    "weight's) or a multiple of --lr (1: the same)"
)


@command()
def finetune(
    model: str = typer.Argument(
        ..., help="a pela student, or any model source (to compare under one recipe)"),
    data: Path = typer.Option(..., "--data", help=LABELLED_HELP),
    out: Path = typer.Option(
        ..., "--out", help="directory for checkpoints, metrics and the fine-tuned model"),
    steps: Optional[int] = typer.Option(None, help="optimizer steps (default: one epoch)"),
    epochs: Optional[float] = typer.Option(None, help="epochs over the data, instead of --steps"),
    batch_size: int = typer.Option(32, "--batch-size", help="global batch per optimizer step"),
    lr: float = typer.Option(1e-4, help=LR_HELP),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help=FT_EVAL_DATA_HELP),
    keep_best: Optional[str] = typer.Option(None, "--keep-best", help=FT_KEEP_BEST_HELP),
    lora: Optional[int] = typer.Option(
        None, help="train only rank-R LoRA adapters (peft) and the head"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in OUT"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
    eval_every: Optional[int] = setting(None, EVAL_EVERY_HELP),
    patience: Optional[int] = setting(None, PATIENCE_HELP),
    weight_decay: float = setting(0.01, "AdamW's weight decay"),
    seed: int = setting(0, "seed of the data order, the new head and everything random"),
    pooling: Optional[str] = setting(None, POOLING_HELP),
    factor_lr: str = setting(MATCHED, FACTOR_LR_HELP),
    grad_accum: int = setting(1, "micro-batches per step"),
    mixed_precision: str = setting("auto", MIXED_HELP),
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
    """Fine-tune a model for classification (PELA stage 3); a head is added or resized to the
    data's classes."""
    config = FinetuneConfig(
        steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        seed=seed, pooling=pooling, lora=lora, grad_accum=grad_accum,
        mixed_precision=mixed_precision, save_every=save_every, log_every=log_every,
        group_by_length=group_by_length, workers=workers, eval_every=eval_every,
        keep_best=keep_best, patience=patience, factor_lr=parse_factor_lr(factor_lr),
    )
    _check_eval_flags(eval_data, eval_every, keep_best)
    _check_counts({"max_length": max_length})
    _save_dtype(save_dtype)
    inputs = {"model": model, "--data": data, "--eval-data": eval_data, "checkpoint": checkpoint}
    _check_output(out, resume, overwrite, inputs)
    fields = {"text_field": text_field, "label_field": label_field}
    ds = _load_data(data, **fields, progress=True)
    test = _labelled(eval_data, fields, dataset_classes(ds)) if eval_data else None
    with run_dir(out, resume, overwrite) as run:
        with activity(f"loading {model}"):
            net = load_for_training(
                model, checkpoint=_opt_str(checkpoint), random_init=random_init,
                allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        collate = _collator(net, max_length, {f"--data {data}": ds,
                                              f"--eval-data {eval_data}": test})
        tuned, result = _finetune(
            net, ds, config, collate_fn=collate, out=run.path, resume=resume, progress=True,
            run_info={"model": model, "data": str(Path(data).resolve())},
            eval_data=test if (eval_every or keep_best) else None)
        summary, record = _finetune_summary(result), training_record(config, result, tuned)
        main = run.publish(tuned, {"finetune": record}, save_dtype)
        if test is not None:  # the saved model's score: an extra, after the model is safe
            with optional_step("the final evaluation on --eval-data"):
                collate = Collator(tuned, max_length=max_length)
                summary["eval"] = evaluate(tuned, test, collate_fn=collate, workers=workers,
                                           progress=True)
                if main:
                    record_metadata(run.path, {"finetune": {**record, "eval": summary["eval"]}})
        if main:
            _finetuned(summary, result, keep_best, patience, out, as_json)
            _half_precision_note(net, save_dtype)


def _labelled(path: Path, fields: dict[str, Optional[str]], classes: Any) -> Any:
    """``--eval-data``, read with the training data's classes; refused if it has no labels."""
    test = _load_data(path, split="test", classes=classes, progress=True, **fields)
    if dataset_classes(test) is None:
        raise PelaError(f"--eval-data {path}: evaluation needs labelled data: "
                        f"{unlabelled_reason(test)}")
    return test


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


def _finetuned(summary: dict[str, Any], result: Any, keep_best: Optional[str],
               patience: Optional[int], out: Path, as_json: bool) -> None:
    """The closing line of ``pela finetune`` (or its summary as JSON)."""
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    acc = ""
    if "eval" in summary:
        scored = summary["eval"]
        acc = f"; accuracy {scored['accuracy']:.4f} on {scored['samples']} examples"
    if result.best is not None:
        acc += f"; kept step {result.best['step']}'s weights, the best evaluation by {keep_best}"
    out_console.print(f"fine-tuned {result.steps} steps{_early(result, patience, keep_best)} in "
                      f"{result.seconds:.0f}s{acc}; saved to {_saved(out)}")
