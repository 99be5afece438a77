"""``pela compare``, ``pela eval``, ``pela export``, ``pela data`` and ``pela demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

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
from pela.deploy.onnx import export_onnx
from pela.errors import PelaError
from pela.evaluation.classifier import evaluate
from pela.evaluation.compare import compare as _compare
from pela.evaluation.multiple_choice import multiple_choice as score_choices
from pela.evaluation.perplexity import perplexity as language_model_perplexity
from pela.metadata import info
from pela.models.export import export_hf
from pela.models.sources import load_for_training
from pela.utils.files import check_not_input, check_output_dir
from pela.utils.progress import activity


@command()
def compare(
    student: str = typer.Argument(..., help="the student (a directory, or any model source)"),
    teacher: str = typer.Argument(..., help="the teacher"),
    data: Path = typer.Option(..., "--data", help="data to compare on (same formats as distill)"),
    samples: int = typer.Option(256, help="examples to use (a seeded random subset)"),
    batch_size: int = typer.Option(32, "--batch-size"),
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
        raise PelaError("--samples and --batch-size must be >= 1")
    ds = _load_data(data, text_field=text_field, progress=True)
    s_model = load_for_training(student, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    t_model = load_for_training(teacher, checkpoint=_opt_str(teacher_checkpoint), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    result = _compare(s_model, t_model, ds, collate_fn=Collator(s_model, max_length=max_length), samples=samples,
                      batch_size=batch_size, blocks=blocks, progress=True)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(Column("block", overflow="fold"), "feature MSE", "cosine", title=f"pela compare ({result['samples']} examples)")
    for b in result["blocks"]:
        table.add_row(b["block"], f"{b['mse']:.5g}", f"{b['cosine']:.4f}")
    table.add_row("[bold]mean[/bold]", f"{result['mean_mse']:.5g}", f"{result['mean_cosine']:.4f}")
    out_console.print(table)
    out_console.print(f"output agreement ({result['output_agreement_kind']}): {result['output_agreement']:.4f}")


@command(name="eval")
def eval_(
    model: str = typer.Argument(..., help="a fine-tuned model directory, or any model source with a head"),
    data: Path = typer.Option(..., "--data", help="labelled data"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="examples per pass (default: 64; 1 window with --perplexity)"),
    split: str = typer.Option("test", help="split to read from Fashion-MNIST idx files, a folder of split folders or a Parquet or Arrow dataset (train; validation, val, valid, dev or eval, which read whichever of those there is; or test, which reads the same or else test)"),
    perplexity: bool = typer.Option(False, "--perplexity", help="a causal language model's perplexity on the text of --data instead"),
    choices: bool = typer.Option(False, "--choices", help="a causal language model's zero-shot accuracy on multiple-choice --data instead "
                                 "(prompt, choices, answer; scored by log-likelihood as the LM Evaluation Harness does)"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON on stdout"),
    max_length: Optional[int] = setting(None, "truncate text to this many tokens"),
    text_field: Optional[str] = setting(None, TEXT_FIELD_HELP),
    label_field: Optional[str] = setting(None, LABEL_FIELD_HELP),
    workers: int = setting(0, WORKERS_HELP),
    checkpoint: Optional[Path] = setting(None, CHECKPOINT_HELP),
    allow_pickle: bool = setting(False, ALLOW_PICKLE_HELP),
    context: Optional[int] = setting(None, "with --perplexity: tokens per window (default: the model's maximum)"),
    stride: Optional[int] = setting(None, "with --perplexity: tokens between window starts (default: context, no overlap)"),
    choices_field: Optional[str] = setting(None, "with --choices: the field holding the choices (default: choices, endings or options)"),
) -> None:
    """Accuracy (top-1, top-5, balanced), macro F1, loss, parameters and throughput of a classifier;
    --json adds each class's. With --perplexity: a language model's token-level perplexity, by
    sliding windows. With --choices: its zero-shot multiple-choice accuracy."""

    if not perplexity and (context is not None or stride is not None):
        raise PelaError("context and stride are settings of --perplexity")
    if perplexity and choices:
        raise PelaError("give --perplexity or --choices, not both")
    if choices_field is not None and not choices:
        raise PelaError("choices_field is a setting of --choices")
    if perplexity:
        return _perplexity(model, data, context, stride, batch_size or 1, text_field, checkpoint, allow_pickle, trust_remote_code, as_json)
    if choices:
        fields = {"prompt_field": text_field, "choices_field": choices_field, "answer_field": label_field, "split": split}
        return _multiple_choice(model, data, batch_size or 8, fields, checkpoint, allow_pickle, trust_remote_code, as_json)
    batch_size = 64 if batch_size is None else batch_size
    if batch_size < 1:
        raise PelaError(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 0:
        raise PelaError(f"workers must be >= 0, got {workers}")
    net = load_for_training(model, checkpoint=_opt_str(checkpoint), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    ds = _load_data(data, split=split, text_field=text_field, label_field=label_field, progress=True)
    trained, given = info(net).classes, dataset_classes(ds)
    # a model pela fine-tuned names its classes: sharing none is a mistake
    if trained and given and not set(trained) & set(given):
        raise PelaError(f"none of the data's classes ({', '.join(map(repr, given[:3]))}{', ...' if len(given) > 3 else ''}) is one of the "
                        f"{len(trained)} classes the model was trained on ({', '.join(map(repr, trained[:3]))}{', ...' if len(trained) > 3 else ''})")
    metrics = evaluate(net, ds, collate_fn=Collator(net, max_length=max_length), batch_size=batch_size, workers=workers,
                       progress=True)
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    table = Table("metric", "value", title=f"pela eval ({metrics['samples']} examples)")
    for k, v in metrics.items():
        if k != "per_class":
            table.add_row(k, "n/a" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:.4f}"))
    out_console.print(table)
    # where a compressed model loses accuracy is rarely spread evenly
    if len(metrics["per_class"]) > 1:
        worst = sorted(metrics["per_class"].items(), key=lambda kv: (kv[1]["recall"], -kv[1]["support"]))[:5]
        out_console.print("lowest recall: " + ", ".join(f"{escape(name)} {c['recall']:.2f} ({c['support']:,} examples)" for name, c in worst)
                          + " (--json lists every class)")


def _perplexity(model: str, data: Path, context: Optional[int], stride: Optional[int], batch_size: int, text_field: Optional[str],
                checkpoint: Optional[Path], allow_pickle: bool, trust_remote_code: bool, as_json: bool) -> None:
    ds = _load_data(data, text_field=text_field, progress=True)
    net = load_for_training(model, checkpoint=_opt_str(checkpoint), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    result = language_model_perplexity(net, ds, context=context, stride=stride, batch_size=batch_size, progress=True)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out_console.print(f"perplexity {result['perplexity']:.3f} (mean NLL {result['nll']:.4f} nats) over {result['tokens']:,} tokens, "
                      f"{result['windows']:,} windows of {result['context']} tokens every {result['stride']}; "
                      f"{result['tokens_per_s']:,.0f} tokens/s")


def _multiple_choice(model: str, data: Path, batch_size: int, fields: dict, checkpoint: Optional[Path], allow_pickle: bool,
                     trust_remote_code: bool, as_json: bool) -> None:
    examples = read_choices(data, **fields)
    net = load_for_training(model, checkpoint=_opt_str(checkpoint), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    result = score_choices(net, examples, batch_size=batch_size, progress=True)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out_console.print(f"accuracy {result['accuracy']:.4f}, length-normalized {result['accuracy_norm']:.4f}, over {result['examples']:,} "
                      f"examples ({result['choices']:,} choices) in {result['seconds']:.0f}s")


EXPORT_FORMATS = ("hf", "onnx")


@command()
def export(
    model: str = typer.Argument(..., help="hf: a pela directory of a transformers model (from compress, "
                                "distill or finetune); onnx: any model pela loads (a pela directory, the original)"),
    out: Path = typer.Option(..., "--out", help="the directory to write"),
    format: str = typer.Option("hf", "--format", help="hf: a Hugging Face directory that loads without pela "
                               "(trust_remote_code=True); onnx: model.onnx for ONNX Runtime, checked against the model"),
    int8: bool = typer.Option(False, "--int8", help="with --format onnx: int8 weights and dynamic int8 "
                              "activations (ONNX Runtime's quantizer)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
) -> None:
    """Ship a model: a Hugging Face directory that loads without pela, or an ONNX graph for ONNX
    Runtime."""
    if format not in EXPORT_FORMATS:
        raise PelaError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    if int8 and format != "onnx":
        raise PelaError("--int8 quantizes the ONNX graph: add --format onnx")
    if format == "onnx":
        return _export_onnx(model, out, overwrite, int8)
    export_hf(Path(model), out, overwrite=overwrite)
    cls = next(iter(json.loads((out / "config.json").read_text())["auto_map"]))
    out_console.print(f"exported to {out}; load it with transformers alone: {cls}.from_pretrained({str(out)!r}, trust_remote_code=True)")


def _export_onnx(model: str, out: Path, overwrite: bool, int8: bool) -> None:
    if Path(model).is_dir():
        check_not_input(out, {"model": Path(model)})
    check_output_dir(out, overwrite)  # before loading: a taken --out is the user's to settle first
    with activity(f"loading {model}"):
        loaded = load_for_training(model)
    with activity("exporting to ONNX and checking it with ONNX Runtime"):
        record = export_onnx(loaded, out, overwrite=overwrite, int8=int8)
    out_console.print(f"exported to {record.path} (inputs {', '.join(record.inputs)}; outputs {', '.join(record.outputs)}); "
                      f"ONNX Runtime matches the model to {record.max_abs_difference:.1e}")
    if record.int8:
        out_console.print(f"int8: outputs within {record.int8_max_abs_difference:.1e} of the float32 model's "
                          f"({100 * record.int8_relative_error:.2f}% of their norm)")


@command(name="data")
def data_(
    path: Path = typer.Argument(..., help="a dataset, as --data takes it"),
    split: str = typer.Option("train", help="split to read from a dataset of several (train; validation, val, valid, dev or eval, which read whichever of those there is; or test, which reads the same or else test)"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    label_field: Optional[str] = typer.Option(None, "--label-field", help=LABEL_FIELD_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the description as JSON on stdout"),
) -> None:
    """What pela reads from a dataset: its examples, the columns it uses, its classes, the first
    example."""

    info = describe(_load_data(path, split=split, text_field=text_field, label_field=label_field, progress=True))
    if as_json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return
    table = Table("", "", title=f"pela data {path}", show_header=False)
    table.add_row("kind", info["kind"])
    table.add_row("examples", f"{info['examples']:,}")
    for name, value in (info.get("fields") or {}).items():
        if value:
            table.add_row(f"{name} field", ", ".join(value) if isinstance(value, list) else value)
    classes = info["classes"]
    table.add_row("classes", f"none: {escape(info['unlabelled'])}" if not classes else f"{len(classes)}: " + ", ".join(
        f"{c} ({n:,})" for c, n in list(classes.items())[:20]) + (", ..." if len(classes) > 20 else ""))
    for key, value in info["first"].items():
        table.add_row(f"first example: {key}", escape(str(value)))
    out_console.print(table)


@command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="where the demo writes its models and report"),
    quick: bool = typer.Option(False, "--quick", help="the same pipeline on a small slice, in about 2 minutes"),
    ratio: float = typer.Option(2.0, help="compression ratio k"),
    overwrite: bool = typer.Option(True, "--overwrite/--no-overwrite", help="replace an earlier demo run in OUT"),
) -> None:
    """The whole PELA pipeline, offline, on all-MiniLM-L6-v2 and WordNet: compress, distill,
    fine-tune, compare."""

    run_demo(out, quick=quick, ratio=ratio, overwrite=overwrite, console=out_console)
