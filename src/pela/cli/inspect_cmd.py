"""``pela compare``, ``pela eval``, ``pela data`` and ``pela demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Column, Table

from pela.cli.common import (
    ALLOW_PICKLE_HELP,
    CHECKPOINT_HELP,
    LABEL_FIELD_HELP,
    TEACHER_CHECKPOINT_HELP,
    TEXT_FIELD_HELP,
    TRUST_HELP,
    WORKERS_HELP,
    _load_data,
    _opt_str,
    command,
    out_console,
)
from pela.cli.config_file import setting
from pela.data.choices import read_choices
from pela.data.collate import Collator
from pela.data.labels import dataset_classes
from pela.data.load import describe
from pela.demo import run_demo
from pela.errors import PelaError
from pela.evaluation.classifier import evaluate
from pela.evaluation.compare import compare as _compare
from pela.evaluation.multiple_choice import multiple_choice as score_choices
from pela.evaluation.perplexity import perplexity as language_model_perplexity
from pela.metadata import info
from pela.models.sources import load_for_training

SPLIT_NAMES = (
    "train; validation, val, valid, dev or eval, which read whichever of those there is; or test, "
    "which reads the same or else test"
)
SPLIT_HELP = (
    "split to read from Fashion-MNIST idx files, a folder of split folders or a Parquet or Arrow "
    f"dataset ({SPLIT_NAMES})"
)
CHOICES_HELP = (
    "a causal language model's zero-shot accuracy on multiple-choice --data instead (prompt, "
    "choices, answer; scored by log-likelihood as the LM Evaluation Harness does)"
)
PERPLEXITY_HELP = "a causal language model's perplexity on the text of --data instead"
CONTEXT_HELP = "with --perplexity: tokens per window (default: the model's maximum)"
STRIDE_HELP = "with --perplexity: tokens between window starts (default: context, no overlap)"
CHOICES_FIELD_HELP = (
    "with --choices: the field holding the choices (default: choices, endings or options)"
)


@command()
def compare(
    student: str = typer.Argument(..., help="the student (a directory, or any model source)"),
    teacher: str = typer.Argument(..., help="the teacher"),
    data: Path = typer.Option(..., "--data", help="data to compare on (same formats as distill)"),
    samples: int = typer.Option(256, help="examples to use (a seeded random subset)"),
    batch_size: int = setting(32, "examples per forward pass"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the comparison as JSON on stdout"),
    blocks: Optional[str] = setting(None, "regex naming the blocks to compare"),
    max_length: Optional[int] = setting(None, "truncate text to this many tokens"),
    text_field: Optional[str] = setting(None, TEXT_FIELD_HELP),
    teacher_checkpoint: Optional[Path] = setting(None, TEACHER_CHECKPOINT_HELP),
    allow_pickle: bool = setting(False, ALLOW_PICKLE_HELP),
) -> None:
    """Per-block feature MSE / cosine similarity and output agreement of a student and its
    teacher."""
    if samples < 1 or batch_size < 1:
        raise PelaError("--samples and batch_size must be >= 1")
    ds = _load_data(data, text_field=text_field, progress=True)
    loading = {"allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code}
    s_model = load_for_training(student, **loading)
    t_model = load_for_training(teacher, checkpoint=_opt_str(teacher_checkpoint), **loading)
    result = _compare(s_model, t_model, ds, collate_fn=Collator(s_model, max_length=max_length),
                      samples=samples, batch_size=batch_size, blocks=blocks, progress=True)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    title = f"pela compare ({result['samples']} examples)"
    table = Table(Column("block", overflow="fold"), "feature MSE", "cosine", title=title)
    for b in result["blocks"]:
        table.add_row(b["block"], f"{b['mse']:.5g}", f"{b['cosine']:.4f}")
    table.add_row("[bold]mean[/bold]", f"{result['mean_mse']:.5g}", f"{result['mean_cosine']:.4f}")
    out_console.print(table)
    kind, agreement = result["output_agreement_kind"], result["output_agreement"]
    out_console.print(f"output agreement ({kind}): {agreement:.4f}")


@command(name="eval")
def eval_(
    model: str = typer.Argument(
        ..., help="a fine-tuned model directory, or any model source with a head"),
    data: Path = typer.Option(..., "--data", help="labelled data"),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="examples per pass (default: 64; 1 window with --perplexity)"),
    split: str = typer.Option("test", help=SPLIT_HELP),
    perplexity: bool = typer.Option(False, "--perplexity", help=PERPLEXITY_HELP),
    choices: bool = typer.Option(False, "--choices", help=CHOICES_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON on stdout"),
    max_length: Optional[int] = setting(None, "truncate text to this many tokens"),
    text_field: Optional[str] = setting(None, TEXT_FIELD_HELP),
    label_field: Optional[str] = setting(None, LABEL_FIELD_HELP),
    workers: int = setting(0, WORKERS_HELP),
    checkpoint: Optional[Path] = setting(None, CHECKPOINT_HELP),
    allow_pickle: bool = setting(False, ALLOW_PICKLE_HELP),
    context: Optional[int] = setting(None, CONTEXT_HELP),
    stride: Optional[int] = setting(None, STRIDE_HELP),
    choices_field: Optional[str] = setting(None, CHOICES_FIELD_HELP),
) -> None:
    """Accuracy (top-1, top-5, balanced), macro F1, loss, parameters and throughput of a classifier;
    --json adds each class's. With --perplexity: a language model's token-level perplexity, by
    sliding windows. With --choices: its zero-shot multiple-choice accuracy."""
    _check_eval_modes(perplexity, choices, context, stride, choices_field)
    loading = {"checkpoint": _opt_str(checkpoint), "allow_pickle": allow_pickle,
               "trust_remote_code": trust_remote_code}
    if perplexity:
        ds = _load_data(data, text_field=text_field, progress=True)
        return _perplexity(model, ds, context, stride, batch_size or 1, loading, as_json)
    if choices:
        fields = {"prompt_field": text_field, "choices_field": choices_field,
                  "answer_field": label_field, "split": split}
        return _multiple_choice(model, data, batch_size or 8, fields, loading, as_json)
    batch_size = 64 if batch_size is None else batch_size
    if batch_size < 1:
        raise PelaError(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 0:
        raise PelaError(f"workers must be >= 0, got {workers}")
    net = load_for_training(model, **loading)
    fields = {"text_field": text_field, "label_field": label_field}
    ds = _load_data(data, split=split, **fields, progress=True)
    _check_classes(info(net).classes, dataset_classes(ds))
    metrics = evaluate(net, ds, collate_fn=Collator(net, max_length=max_length),
                       batch_size=batch_size, workers=workers, progress=True)
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    _print_metrics(metrics)


def _check_eval_modes(perplexity: bool, choices: bool, context: Optional[int],
                      stride: Optional[int], choices_field: Optional[str]) -> None:
    if not perplexity and (context is not None or stride is not None):
        raise PelaError("context and stride are settings of --perplexity")
    if perplexity and choices:
        raise PelaError("give --perplexity or --choices, not both")
    if choices_field is not None and not choices:
        raise PelaError("choices_field is a setting of --choices")


def _check_classes(trained: Optional[list], given: Optional[list]) -> None:
    """A model pela fine-tuned names its classes: data that shares none of them is a mistake."""
    if trained and given and not set(trained) & set(given):
        raise PelaError(f"none of the data's classes ({_first_three(given)}) is one of the "
                        f"{len(trained)} classes the model was trained on "
                        f"({_first_three(trained)})")


def _first_three(names: list) -> str:
    return ", ".join(map(repr, names[:3])) + (", ..." if len(names) > 3 else "")


def _print_metrics(metrics: dict) -> None:
    table = Table("metric", "value", title=f"pela eval ({metrics['samples']} examples)")
    for k, v in metrics.items():
        if k != "per_class":
            shown = "n/a" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:.4f}")
            table.add_row(k, shown)
    out_console.print(table)
    # where a compressed model loses accuracy is rarely spread evenly
    if len(metrics["per_class"]) > 1:
        by_recall = sorted(metrics["per_class"].items(),
                           key=lambda kv: (kv[1]["recall"], -kv[1]["support"]))
        worst = ", ".join(f"{escape(name)} {c['recall']:.2f} ({c['support']:,} examples)"
                          for name, c in by_recall[:5])
        out_console.print(f"lowest recall: {worst} (--json lists every class)")


def _perplexity(model: str, ds: Any, context: Optional[int], stride: Optional[int],
                batch_size: int, loading: dict[str, Any], as_json: bool) -> None:
    net = load_for_training(model, **loading)
    result = language_model_perplexity(net, ds, context=context, stride=stride,
                                       batch_size=batch_size, progress=True)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out_console.print(
        f"perplexity {result['perplexity']:.3f} (mean NLL {result['nll']:.4f} nats) over "
        f"{result['tokens']:,} tokens, {result['windows']:,} windows of {result['context']} "
        f"tokens every {result['stride']}; {result['tokens_per_s']:,.0f} tokens/s")


def _multiple_choice(model: str, data: Path, batch_size: int, fields: dict,
                     loading: dict[str, Any], as_json: bool) -> None:
    examples = read_choices(data, **fields)
    net = load_for_training(model, **loading)
    result = score_choices(net, examples, batch_size=batch_size, progress=True)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out_console.print(
        f"accuracy {result['accuracy']:.4f}, length-normalized {result['accuracy_norm']:.4f}, "
        f"over {result['examples']:,} examples ({result['choices']:,} choices) in "
        f"{result['seconds']:.0f}s")


@command(name="data")
def data_(
    path: Path = typer.Argument(..., help="a dataset, as --data takes it"),
    split: str = typer.Option(
        "train", help=f"split to read from a dataset of several ({SPLIT_NAMES})"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    label_field: Optional[str] = typer.Option(None, "--label-field", help=LABEL_FIELD_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the description as JSON on stdout"),
) -> None:
    """What pela reads from a dataset: its examples, the columns it uses, its classes, the first
    example."""
    fields = {"text_field": text_field, "label_field": label_field}
    info = describe(_load_data(path, split=split, **fields, progress=True))
    if as_json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return
    table = Table("", "", title=f"pela data {path}", show_header=False)
    table.add_row("kind", info["kind"])
    table.add_row("examples", f"{info['examples']:,}")
    for name, value in (info.get("fields") or {}).items():
        if value:
            table.add_row(f"{name} field", ", ".join(value) if isinstance(value, list) else value)
    table.add_row("classes", _classes(info))
    for key, value in info["first"].items():
        table.add_row(f"first example: {key}", escape(str(value)))
    out_console.print(table)


def _classes(info: dict) -> str:
    """The classes with their counts, the first 20 of them."""
    classes = info["classes"]
    if not classes:
        return f"none: {escape(info['unlabelled'])}"
    shown = ", ".join(f"{c} ({n:,})" for c, n in list(classes.items())[:20])
    return f"{len(classes)}: {shown}" + (", ..." if len(classes) > 20 else "")


@command()
def demo(
    out: Path = typer.Option(
        Path("runs/demo"), "--out", help="where the demo writes its models and report"),
    quick: bool = typer.Option(
        False, "--quick", help="the same pipeline on a small slice, in about 2 minutes"),
    ratio: float = typer.Option(2.0, help="compression ratio k"),
    overwrite: bool = typer.Option(
        True, "--overwrite/--no-overwrite", help="replace an earlier demo run in OUT"),
) -> None:
    """The whole PELA pipeline, offline, on all-MiniLM-L6-v2 and WordNet: compress, distill,
    fine-tune, compare."""
    run_demo(out, quick=quick, ratio=ratio, overwrite=overwrite, console=out_console)
