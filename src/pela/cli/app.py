"""The ``pela`` command: a thin layer over the Python API.

User mistakes print one ``error: …`` line on stderr and exit with code 2; nothing else does.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from pela.utils.memory import keep_freed_memory
from pela.errors import PelaError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Smaller, faster Transformers by low-rank approximation and distillation (PELA).")
out_console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from pela import __version__

        def installed(name: str) -> str:
            try:
                return version(name)
            except PackageNotFoundError:
                return "not installed"

        deps = ", ".join(f"{name} {installed(name)}" for name in ("torch", "transformers", "timm", "accelerate", "peft"))
        print(f"pela {__version__} ({deps})")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="print the versions of pela and its main dependencies, and exit")) -> None:
    pass


TEXT_FIELD_HELP = ("column (CSV/TSV, Parquet) or key (JSON/JSONL) holding the text; two, comma-separated, for sentence pairs "
                   "(e.g. sentence1,sentence2); a CSV/TSV without a header row names its columns 0, 1, ... "
                   "[default: text, or the records' only column of text]")
LABEL_FIELD_HELP = ("column (CSV/TSV, Parquet) or key (JSON/JSONL) holding the class "
                    "[default: label (or labels, gold_label, class, category, sentiment), or a Hugging Face dataset's only ClassLabel column, "
                    "or a headerless CSV/TSV's only column of whole numbers]")
ALLOW_PICKLE_HELP = "also read legacy .pt/.pth/.bin weights, with torch.load(weights_only=True)"
CHECKPOINT_HELP = "safetensors weights for a timm: architecture (a fine-tuned checkpoint brings its own number of classes)"
TEACHER_CHECKPOINT_HELP = "the teacher's weights, for a timm: teacher (as compress --checkpoint)"
TRUST_HELP = "run the model code a Hugging Face model brings along (*.py named in its config's auto_map); read it first"
SAVE_DTYPE_HELP = ("write the weights in float32, bfloat16 or float16 (half the file, to ship; pela loads half-precision "
                   "weights back in float32 to train); default: as they are")
WORKERS_HELP = "DataLoader processes that tokenize or decode batches while the model runs (0 = in the main process); helps most on a GPU"

@app.command()
def compress(
    source: str = typer.Argument(..., help="timm:NAME, hf:ORG/NAME, or a local model directory"),
    out: Path = typer.Option(..., "--out", help="directory to write the compressed model to"),
    ratio: Optional[float] = typer.Option(None, help="compression ratio k of each layer (default 2)"),
    rank: Optional[int] = typer.Option(None, help="one rank for every layer"),
    energy: Optional[float] = typer.Option(None, help="keep this fraction of each layer's singular-value energy"),
    align: int = typer.Option(8, help="round ranks to a multiple of this (1 = exact paper ranks, which a GPU can run several times slower)"),
    exclude: Optional[List[str]] = typer.Option(None, help="regex of layers to keep dense (replaces the defaults)"),
    include: Optional[List[str]] = typer.Option(None, help="regex of layers to factorize (only these)"),
    checkpoint: Optional[Path] = typer.Option(None, help=CHECKPOINT_HELP),
    random_init: bool = typer.Option(False, "--random-init", help="no pretrained weights (smoke tests, benchmarks)"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=ALLOW_PICKLE_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    param_budget: Optional[float] = typer.Option(None, "--param-budget", help="keep this fraction of the factorizable parameters, "
                                                 "ranks allocated across layers by measured sensitivity (needs --calib)"),
    init: Optional[str] = typer.Option(None, help="svd (weights) or whiten (outputs on --calib data); default whiten with --calib, else svd"),
    calib: Optional[Path] = typer.Option(None, "--calib", help="calibration examples (same formats as pela distill --data)"),
    calib_samples: int = typer.Option(512, "--calib-samples", help="calibration examples to use"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="truncate calibration text to this many tokens"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="draw per-layer ranks and spectra to this .png/.pdf/.svg"),
    device: Optional[str] = typer.Option(None, help="where to run the factorization math (cpu, cuda)"),
    save_dtype: Optional[str] = typer.Option(None, "--save-dtype", help=SAVE_DTYPE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
) -> None:
    """Factorize a model's linear layers (PELA stage 1) and save it."""
    from pela.compression import calibrate
    from pela.compression.compress import compress as _compress
    from pela.models.sources import load_model
    from pela.models.io import save_pretrained
    from pela.compression.config import LowRankConfig
    from pela.data.datasets import Collator
    from pela.compression.compress import NEEDS_CALIBRATION
    from pela.models.io import check_output_dir, save_dtype as _save_dtype
    from pela.compression.plot import check_figure_path, plot_compression

    config = LowRankConfig(ratio=ratio, rank=rank, energy=energy, param_budget=param_budget, align=align, include=tuple(include or ()),
                           exclude=tuple(exclude) if exclude else None, device=device, init=init or ("whiten" if calib else "svd"))
    needs_calib = config.init in NEEDS_CALIBRATION or config.param_budget is not None
    if needs_calib and calib is None:
        raise PelaError(f"{'--param-budget' if config.param_budget is not None else '--init ' + config.init} needs calibration data: add --calib DATA")
    if calib is not None and not needs_calib:
        raise PelaError("--calib is used by --init whiten and --param-budget; with --init svd and a per-layer rule it would be ignored")
    if calib_samples < 1:
        raise PelaError(f"--calib-samples must be >= 1, got {calib_samples}")
    if max_length is not None and max_length < 1:
        raise PelaError(f"--max-length must be >= 1, got {max_length}")
    if plot is not None:
        check_figure_path(plot)
    check_output_dir(out, overwrite)  # fail before the slow part
    _save_dtype(save_dtype)
    calib_data = _load_data(calib, text_field=text_field, progress=not as_json) if calib is not None else None
    with err_console.status(f"loading {source}"):
        model = load_model(source, checkpoint=_opt_str(checkpoint), random_init=random_init, allow_pickle=allow_pickle,
                           trust_remote_code=trust_remote_code)
    calibration = None
    if calib_data is not None:
        calibration = calibrate(model, calib_data, config, collate_fn=Collator(model, max_length=max_length), samples=calib_samples,
                                progress=not as_json)
    report = _compress(model, config, calibration=calibration, progress=not as_json)
    if plot is not None:
        plot_compression(report, plot)
    save_pretrained(model, out, overwrite=overwrite, extra={"compression": {k: v for k, v in report.to_dict().items() if k != "layers"}},
                    dtype=save_dtype)
    _half_precision_note(model, save_dtype)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    table = Table(Column("layer", overflow="fold"), "in", "out", "rank", "init", "rel. error", "note", title="pela compress",
                  caption="rel. error: of the weights (svd), of the outputs on the calibration data (whiten)")
    for r in report.layers:
        unreached = r.init is not None and r.init != config.init  # e.g. CLIP's text tower, calibrated on images alone
        table.add_row(r.name, str(r.in_features), str(r.out_features), "dense" if r.rank is None else str(r.rank), r.init or "",
                      "" if r.rel_error is None else f"{r.rel_error:.4f}",
                      r.reason or (f"no calibration input reached it: {r.init}, not {config.init}" if unreached else ""))
    out_console.print(table)
    out_console.print(f"{report.summary()}\nsaved to {_saved(out)}")


@app.command()
def bench(
    model: str = typer.Argument(..., help="model to measure (timm:NAME, hf:ID, or a directory)"),
    vs: Optional[str] = typer.Option(None, "--vs", help="a second model measured side by side; ratio = MODEL / VS"),
    batch_size: int = typer.Option(32, "--batch-size"),
    seq_len: int = typer.Option(128, "--seq-len", help="sequence length for text models"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile both models first"),
    compile_mode: Optional[str] = typer.Option(None, "--compile-mode", help="torch.compile mode (default, reduce-overhead, "
                                               "max-autotune, max-autotune-no-cudagraphs); implies --compile"),
    iters: int = typer.Option(5, help="forward passes per round"),
    rounds: int = typer.Option(3, help="interleaved rounds; each model's median round counts"),
    random_init: bool = typer.Option(False, "--random-init", help="build timm:/hf: sources without pretrained weights"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="print results as JSON on stdout"),
) -> None:
    """Throughput (items/s) and peak memory of a model, or of two side by side."""
    from pela.bench import COMPILE_MODES, benchmark
    from pela.models.sources import load_model

    for flag, value in (("--batch-size", batch_size), ("--seq-len", seq_len), ("--iters", iters), ("--rounds", rounds)):
        if value < 1:
            raise PelaError(f"{flag} must be >= 1, got {value}")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise PelaError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
    sources = [model] + ([vs] if vs else [])
    models = {}
    for s in sources:
        with err_console.status(f"loading {s}"):
            models[s if s not in models else s + " (2)"] = load_model(s, random_init=random_init and not Path(s).is_dir(),
                                                                    trust_remote_code=trust_remote_code)
    results = benchmark(models, batch_size=batch_size, device=device, dtype=dtype, compile=compile, seq_len=seq_len, iters=iters, rounds=rounds,
                        compile_mode=compile_mode, progress=True)
    ratio = results[0].items_per_s / results[1].items_per_s if vs else None
    memory_ratio = results[0].peak_memory_bytes / results[1].peak_memory_bytes if vs else None
    if as_json:
        print(json.dumps({"results": [r.to_dict() for r in results], "ratio": ratio, "memory_ratio": memory_ratio,
                          "keep_freed_memory": keep_freed_memory()}, indent=2))  # idempotent; says whether it applies
        return
    inputs = "; ".join(dict.fromkeys(_shapes_text(r.input_shapes) for r in results))  # once when both models take the same
    caption = f"inputs: {inputs}" + ("" if results[0].device != "cpu" else "\n" + (
        "freed memory kept for reuse (PELA_KEEP_FREED_MEMORY=0: glibc's default)" if keep_freed_memory() else "the C library's default allocator")
        + "\npeak memory: the tensors live at once in one eager pass (weights, inputs, activations)")
    # two directories often share a long prefix: fold a long name onto more lines rather than cut it
    table = Table(Column("model", overflow="fold"), "params", "items/s", "ms/batch", "rounds (ms/batch)", "peak memory", caption=caption,
                  title=f"pela bench ({results[0].device}, {dtype}, batch {batch_size}{', compiled' if results[0].compiled else ''}{f' ({compile_mode})' if compile_mode else ''})")
    for r in results:
        mem = f"{r.peak_memory_bytes / 2**20:,.0f} MiB"
        spread = f"{min(r.round_ms):,.1f}–{max(r.round_ms):,.1f}" if len(r.round_ms) > 1 else "one round"
        table.add_row(r.name, f"{r.params:,}", f"{r.items_per_s:,.1f}", f"{r.ms_per_batch:.1f}", spread, mem)
    out_console.print(table)
    if ratio is not None:
        out_console.print(f"throughput ratio {results[0].name} / {results[1].name}: [bold]{ratio:.2f}×[/bold]; "
                          f"peak memory ratio {memory_ratio:.2f}×")


def _load_data(path: Path, *, text_field: Optional[str], **kwargs: Any) -> Any:
    """`pela.data.load_dataset`, saying which columns hold the text and the class where pela chose
    others than text and label."""
    from pela.data.datasets import load_dataset

    ds = load_dataset(path, text_field=text_field, **kwargs)
    fields = getattr(ds, "text_fields", ())
    if text_field is None and fields and fields != ("text",):
        err_console.print(f"{Path(path).name}: the text is its {fields[0]!r} column (--text-field names another)")
    if kwargs.get("label_field") is None and getattr(ds, "classes", None) and getattr(ds, "label_field", "label") != "label":
        err_console.print(f"{Path(path).name}: the class is its {ds.label_field!r} column (--label-field names another)")
    return ds


def _opt_str(path: Optional[Path]) -> Optional[str]:
    return None if path is None else str(path)


def _shapes_text(shapes: dict[str, list[int]]) -> str:
    """``{"input_ids": [32, 128]}`` → ``input_ids 32×128``."""
    return ", ".join(f"{name} {'×'.join(map(str, shape))}" for name, shape in shapes.items())


@app.command()
def distill(
    student: Path = typer.Option(..., "--student", help="a compressed model directory (from pela compress)"),
    teacher: str = typer.Option(..., "--teacher", help="the original model (timm:NAME, hf:ID, or a directory)"),
    data: Path = typer.Option(..., "--data", help="text (.txt, fortune files, .jsonl/.json/.csv/.tsv, each also .gz; .parquet/.arrow), a folder of them (shards), of images or of .txt files, or Fashion-MNIST idx files"),
    out: Path = typer.Option(..., "--out", help="directory for checkpoints, metrics and the final student"),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="held-out data on which pela compare scores the student at the end (and during training, with --eval-every or --keep-best)"),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="score the student on --eval-data every N steps and at the end (eval_* rows in metrics.jsonl)"),
    eval_samples: int = typer.Option(256, "--eval-samples", help="examples of --eval-data to score on (a seeded random subset)"),
    keep_best: Optional[str] = typer.Option(None, "--keep-best", help="save the student of the best evaluation by this metric, not the last: mean_mse, mean_cosine or output_agreement (evaluates every epoch unless --eval-every says)"),
    patience: Optional[int] = typer.Option(None, "--patience", help="with --keep-best: stop after N evaluations without a better one"),
    steps: Optional[int] = typer.Option(None, help="optimizer steps (default: one epoch)"),
    epochs: Optional[float] = typer.Option(None, help="epochs over the data, instead of --steps"),
    batch_size: int = typer.Option(32, "--batch-size", help="global batch per optimizer step"),
    lr: float = typer.Option(1e-4, help="peak learning rate (AdamW, warm-up + cosine)"),
    seed: int = typer.Option(0),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="checkpoint every N steps"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in OUT"),
    alpha: float = typer.Option(1.0, help="weight of feature distillation (every block, every real token)"),
    beta: float = typer.Option(0.0, help="weight of logit distillation"),
    task_weight: float = typer.Option(1.0, "--task-weight", help="weight of the task loss (labelled data with as many classes as the head, and not another set of names than the model's)"),
    gamma: float = typer.Option(0.0, help="weight of weight-perturbation regularization"),
    epsilon: float = typer.Option(1e-3, help="target of max|BA - W| for the regularization"),
    grad_accum: int = typer.Option(1, "--grad-accum", help="micro-batches per step"),
    clip: float = typer.Option(1.0, help="gradient-norm clip (0 = off)"),
    mixed_precision: str = typer.Option("auto", "--mixed-precision", help="auto (bf16 on GPU), no, bf16, fp16"),
    blocks: Optional[str] = typer.Option(None, help="regex naming the blocks to match (default: found automatically)"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    label_field: Optional[str] = typer.Option(None, "--label-field", help=LABEL_FIELD_HELP + " (for the task loss)"),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="truncate text to this many tokens"),
    log_every: int = typer.Option(10, "--log-every"),
    group_by_length: bool = typer.Option(False, "--group-by-length", help="batch texts of similar length (less padding)"),
    workers: int = typer.Option(0, "--workers", help=WORKERS_HELP),
    teacher_checkpoint: Optional[Path] = typer.Option(None, "--teacher-checkpoint", help=TEACHER_CHECKPOINT_HELP),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=ALLOW_PICKLE_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    save_dtype: Optional[str] = typer.Option(None, "--save-dtype", help=SAVE_DTYPE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
) -> None:
    """Intermediate pre-training (PELA stage 2): distill the student from the frozen teacher."""
    from pela.models.sources import load_model
    from pela.data.datasets import Collator
    from pela.training.distill import DistillConfig, distill as _distill
    from pela.models.io import is_pela_dir, save_dtype as _save_dtype

    config = DistillConfig(steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, alpha=alpha, beta=beta, task=task_weight,
                           gamma=gamma, epsilon=epsilon, grad_accum=grad_accum, clip=clip or None, seed=seed,
                           mixed_precision=mixed_precision, save_every=save_every, log_every=log_every, blocks=blocks,
                           group_by_length=group_by_length, workers=workers, eval_every=eval_every, keep_best=keep_best,
                           patience=patience)
    if max_length is not None and max_length < 1:
        raise PelaError(f"--max-length must be >= 1, got {max_length}")
    _check_eval_flags(eval_data, eval_every, keep_best)
    if eval_samples < 1:
        raise PelaError(f"--eval-samples must be >= 1, got {eval_samples}")
    if not is_pela_dir(student):
        raise PelaError(f"--student {student} is not a directory written by pela (run pela compress first)")
    _save_dtype(save_dtype)
    ds = _load_data(data, text_field=text_field, label_field=label_field, progress=True)
    held_out = _load_data(eval_data, split="test", text_field=text_field, progress=True) if eval_data else None
    with _run_dir(out, resume, overwrite):
        with err_console.status("loading models"):
            student_model = load_model(str(student), trust_remote_code=trust_remote_code)  # trains in float32
            teacher_model = load_model(teacher, checkpoint=_opt_str(teacher_checkpoint), allow_pickle=allow_pickle,
                                       trust_remote_code=trust_remote_code)
        collate = Collator(student_model, max_length=max_length)
        info = {"student": str(Path(student).resolve()), "teacher": teacher, "data": str(Path(data).resolve())}
        result = _distill(student_model, teacher_model, ds, config, collate_fn=collate, out=out, resume=resume, progress=True, run_info=info,
                          eval_data=held_out, eval_samples=eval_samples)
        record = {**config.to_dict(), "final": result.history[-1] if result.history else {},
                  "processes": len(result.rank_checksums), "rank_checksums": result.rank_checksums}
        if result.evals:
            record["evals"] = result.evals
        if result.best is not None:
            record["best"] = result.best
        record.update(trained_steps=result.steps, stopped_early=result.stopped_early)
        if _publish(student_model, out, {"distill": record}, save_dtype):
            last = result.history[-1] if result.history else {}
            held = ""
            if result.evals:
                shown = keep_best or "mean_mse"
                score = result.best[shown] if result.best else result.evals[-1][shown]
                held = f"; held-out {shown} {score:.4g}" + (f" (step {result.best['step']}'s student, the best)" if result.best else "")
            early = f" (stopped early: {patience} evaluations without a better {keep_best})" if result.stopped_early else ""
            out_console.print(f"distilled {result.steps} steps{early} in {result.seconds:.0f}s ({result.items_per_s:.1f} items/s); "
                              f"final loss {last.get('loss', float('nan')):.4g}{held}; student saved to {_saved(out)}")
            _half_precision_note(student_model, save_dtype)


def _check_eval_flags(eval_data: Path | None, eval_every: int | None, keep_best: str | None) -> None:
    """Evaluations during training (distill, finetune) need data to evaluate on."""
    if (eval_every or keep_best) and eval_data is None:
        raise PelaError(f"{'--eval-every' if eval_every else '--keep-best'} needs --eval-data")


def _half_precision_note(model: Any, save_dtype: str | None) -> None:
    """Say how to keep the size of weights that came in half precision and were saved in float32."""
    dtype = getattr(model, "pela_weights_dtype", None)
    if dtype and save_dtype is None:
        err_console.print(f"note: the weights came in {dtype} and were saved in float32, twice the bytes; "
                          f"--save-dtype {dtype} keeps their size")


def _saved(out: Path) -> str:
    """``out`` with the size and dtype of the weights written there, for the closing line."""
    from pela.models.io import WEIGHTS_NAME, stored_float_dtype

    weights = Path(out) / WEIGHTS_NAME
    dtype = stored_float_dtype(weights)
    in_dtype = f" in {str(dtype).removeprefix('torch.')}" if dtype else ""
    return f"{out} ({weights.stat().st_size / 1e6:,.1f} MB{in_dtype})"


def _publish(model, out: Path, extra: dict, dtype: str | None = None) -> bool:
    """On the main process: write the final model into the run directory and drop its checkpoints.

    Returns whether this is the main process (the one that should also print the summary)."""
    from pela.training.checkpoint import remove_checkpoints
    from pela.models.io import save_into
    from pela.training.loop import partial_state

    if not partial_state().is_main_process:
        return False
    save_into(model, out, extra=extra, dtype=dtype)
    remove_checkpoints(out / "checkpoints")
    return True


@contextlib.contextmanager
def _run_dir(out: Path, resume: bool, overwrite: bool) -> Iterator[None]:
    """Create (or, with ``resume``, check) a run directory; if the run then fails before its first
    checkpoint, remove the directory again, so a mistake leaves nothing behind and nothing is lost."""
    import shutil

    from pela.training.checkpoint import latest_checkpoint
    from pela.models.io import check_output_dir
    from pela.training.loop import partial_state

    state = partial_state()
    if resume:
        if not out.is_dir() or latest_checkpoint(out / "checkpoints") is None:
            raise PelaError(f"no checkpoint to resume from in {out}")
        yield
        return
    check_output_dir(out, overwrite)
    state.wait_for_everyone()
    if state.is_main_process:
        if overwrite and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    try:
        yield
    except BaseException:
        if state.is_main_process and latest_checkpoint(out / "checkpoints") is None and not (out / "pela.json").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


@app.command()
def compare(
    student: str = typer.Argument(..., help="the student (a directory, or any model source)"),
    teacher: str = typer.Argument(..., help="the teacher"),
    data: Path = typer.Option(..., "--data", help="data to compare on (same formats as distill)"),
    samples: int = typer.Option(256, help="examples to use (a seeded random subset)"),
    batch_size: int = typer.Option(32, "--batch-size"),
    blocks: Optional[str] = typer.Option(None, help="regex naming the blocks to compare"),
    max_length: Optional[int] = typer.Option(None, "--max-length"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    teacher_checkpoint: Optional[Path] = typer.Option(None, "--teacher-checkpoint", help=TEACHER_CHECKPOINT_HELP),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=ALLOW_PICKLE_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the comparison as JSON on stdout"),
) -> None:
    """Per-block feature MSE / cosine similarity and output agreement of a student and its teacher."""
    from pela.training.compare import compare as _compare
    from pela.data.datasets import Collator
    from pela.models.sources import load_model

    if samples < 1 or batch_size < 1:
        raise PelaError("--samples and --batch-size must be >= 1")
    ds = _load_data(data, text_field=text_field, progress=not as_json)
    s_model = load_model(student, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    t_model = load_model(teacher, checkpoint=_opt_str(teacher_checkpoint), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    result = _compare(s_model, t_model, ds, collate_fn=Collator(s_model, max_length=max_length), samples=samples,
                      batch_size=batch_size, blocks=blocks, progress=not as_json)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(Column("block", overflow="fold"), "feature MSE", "cosine", title=f"pela compare ({result['samples']} examples)")
    for b in result["blocks"]:
        table.add_row(b["block"], f"{b['mse']:.5g}", f"{b['cosine']:.4f}")
    table.add_row("[bold]mean[/bold]", f"{result['mean_mse']:.5g}", f"{result['mean_cosine']:.4f}")
    out_console.print(table)
    out_console.print(f"output agreement ({result['output_agreement_kind']}): {result['output_agreement']:.4f}")


@app.command()
def finetune(
    model: str = typer.Argument(..., help="a pela student, or any model source (to compare under one recipe)"),
    data: Path = typer.Option(..., "--data", help="labelled data: a folder of class sub-folders (images or .txt files), Fashion-MNIST idx, or records (CSV/TSV/JSONL/JSON/Parquet/Arrow) with a label"),
    out: Path = typer.Option(..., "--out", help="directory for checkpoints, metrics and the fine-tuned model"),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="labelled data to evaluate on at the end (and during training, with --eval-every or --keep-best)"),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="evaluate on --eval-data every N steps too (logged as eval_* in metrics.jsonl)"),
    keep_best: Optional[str] = typer.Option(None, "--keep-best", help="save the weights of the best evaluation by this metric, not the last: accuracy, balanced_accuracy, macro_f1, top5 or loss (evaluates every epoch unless --eval-every says)"),
    patience: Optional[int] = typer.Option(None, "--patience", help="with --keep-best: stop after N evaluations without a better one"),
    steps: Optional[int] = typer.Option(None, help="optimizer steps (default: one epoch)"),
    epochs: Optional[float] = typer.Option(None, help="epochs over the data, instead of --steps"),
    batch_size: int = typer.Option(32, "--batch-size", help="global batch per optimizer step"),
    lr: float = typer.Option(1e-4, help="peak learning rate (AdamW, warm-up + cosine)"),
    weight_decay: float = typer.Option(0.01, "--weight-decay"),
    seed: int = typer.Option(0),
    pooling: str = typer.Option("mean", help="for an added head: mean (masked mean of tokens) or cls"),
    lora: Optional[int] = typer.Option(None, help="train only rank-R LoRA adapters (peft) and the head"),
    grad_accum: int = typer.Option(1, "--grad-accum"),
    mixed_precision: str = typer.Option("auto", "--mixed-precision", help="auto (bf16 on GPU), no, bf16, fp16"),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="truncate text to this many tokens"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    label_field: Optional[str] = typer.Option(None, "--label-field", help=LABEL_FIELD_HELP),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="checkpoint every N steps"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in OUT"),
    random_init: bool = typer.Option(False, "--random-init", help="no pretrained weights (the control)"),
    checkpoint: Optional[Path] = typer.Option(None, help=CHECKPOINT_HELP),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=ALLOW_PICKLE_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    log_every: int = typer.Option(10, "--log-every"),
    group_by_length: bool = typer.Option(False, "--group-by-length", help="batch texts of similar length (less padding)"),
    workers: int = typer.Option(0, "--workers", help=WORKERS_HELP),
    save_dtype: Optional[str] = typer.Option(None, "--save-dtype", help=SAVE_DTYPE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
) -> None:
    """Fine-tune a model for classification (PELA stage 3); a head is added or resized to the data's classes."""
    from pela.data.datasets import Collator
    from pela.training.finetune import FinetuneConfig, evaluate, finetune as _finetune
    from pela.models.sources import load_model

    config = FinetuneConfig(steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                            pooling=pooling, lora=lora, grad_accum=grad_accum, mixed_precision=mixed_precision,
                            save_every=save_every, log_every=log_every, group_by_length=group_by_length,
                            workers=workers, eval_every=eval_every, keep_best=keep_best, patience=patience)
    _check_eval_flags(eval_data, eval_every, keep_best)
    if max_length is not None and max_length < 1:
        raise PelaError(f"--max-length must be >= 1, got {max_length}")
    from pela.data.datasets import dataset_classes
    from pela.models.io import save_dtype as _save_dtype

    _save_dtype(save_dtype)

    ds = _load_data(data, text_field=text_field, label_field=label_field, progress=not as_json)
    test = (_load_data(eval_data, split="test", text_field=text_field, label_field=label_field, classes=dataset_classes(ds),
                         progress=not as_json)
            if eval_data else None)
    with _run_dir(out, resume, overwrite):
        with err_console.status(f"loading {model}"):
            net = load_model(model, checkpoint=_opt_str(checkpoint), random_init=random_init, allow_pickle=allow_pickle,
                             trust_remote_code=trust_remote_code)
        tuned, result = _finetune(net, ds, config, collate_fn=Collator(net, max_length=max_length), out=out, resume=resume,
                                  progress=not as_json, run_info={"model": model, "data": str(Path(data).resolve())},
                                  eval_data=test if (eval_every or keep_best) else None)
        summary = {"steps": result.steps, "seconds": result.seconds, "items_per_s": result.items_per_s,
                   "final": result.history[-1] if result.history else {}}
        if result.evals:
            summary["evals"] = result.evals
        if result.best is not None:
            summary["best"] = result.best
        summary["stopped_early"] = result.stopped_early
        if test is not None:
            summary["eval"] = evaluate(tuned, test, collate_fn=Collator(tuned, max_length=max_length), workers=workers, progress=not as_json)
        if _publish(tuned, out, {"finetune": {**config.to_dict(), **summary}}, save_dtype):
            if as_json:
                print(json.dumps(summary, indent=2))
            else:
                acc = f"; accuracy {summary['eval']['accuracy']:.4f} on {summary['eval']['samples']} examples" if test is not None else ""
                if result.best is not None:
                    acc += f"; kept step {result.best['step']}'s weights, the best evaluation by {keep_best}"
                early = f" (stopped early: {patience} evaluations without a better {keep_best})" if result.stopped_early else ""
                out_console.print(f"fine-tuned {result.steps} steps{early} in {result.seconds:.0f}s{acc}; saved to {_saved(out)}")
            _half_precision_note(net, save_dtype)


@app.command(name="eval")
def eval_(
    model: str = typer.Argument(..., help="a fine-tuned model directory, or any model source with a head"),
    data: Path = typer.Option(..., "--data", help="labelled data"),
    batch_size: int = typer.Option(64, "--batch-size"),
    max_length: Optional[int] = typer.Option(None, "--max-length"),
    split: str = typer.Option("test", help="split to read from Fashion-MNIST idx files, a folder of split folders or a Parquet or Arrow dataset (train; validation, val, valid, dev or eval, which read whichever of those there is; or test, which reads the same or else test)"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    label_field: Optional[str] = typer.Option(None, "--label-field", help=LABEL_FIELD_HELP),
    workers: int = typer.Option(0, "--workers", help=WORKERS_HELP),
    checkpoint: Optional[Path] = typer.Option(None, help=CHECKPOINT_HELP),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=ALLOW_PICKLE_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON on stdout"),
) -> None:
    """Accuracy (top-1, top-5, balanced), macro F1, loss, parameters and throughput of a classifier; --json adds each class's."""
    from pela.data.datasets import Collator
    from pela.training.finetune import evaluate
    from pela.models.sources import load_model

    if batch_size < 1:
        raise PelaError(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 0:
        raise PelaError(f"--workers must be >= 0, got {workers}")
    net = load_model(model, checkpoint=_opt_str(checkpoint), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    ds = _load_data(data, split=split, text_field=text_field, label_field=label_field, classes=getattr(net, "pela_classes", None),
                      progress=not as_json)
    metrics = evaluate(net, ds, collate_fn=Collator(net, max_length=max_length), batch_size=batch_size, workers=workers,
                       progress=not as_json)
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    table = Table("metric", "value", title=f"pela eval ({metrics['samples']} examples)")
    for k, v in metrics.items():
        if k != "per_class":
            table.add_row(k, "n/a" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:.4f}"))
    out_console.print(table)
    if len(metrics["per_class"]) > 1:  # where a compressed model loses accuracy is rarely spread evenly
        worst = sorted(metrics["per_class"].items(), key=lambda kv: (kv[1]["recall"], -kv[1]["support"]))[:5]
        out_console.print("lowest recall: " + ", ".join(f"{escape(name)} {c['recall']:.2f} ({c['support']:,} examples)" for name, c in worst)
                          + " (--json lists every class)")


@app.command()
def export(
    model: Path = typer.Argument(..., help="a pela directory of a transformers model (from compress, distill or finetune)"),
    out: Path = typer.Option(..., "--out", help="the Hugging Face directory to write"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
) -> None:
    """Write a compressed transformers model as a Hugging Face directory that loads without pela (trust_remote_code=True)."""
    from pela.models.export import export_hf

    export_hf(model, out, overwrite=overwrite)
    cls = next(iter(json.loads((out / "config.json").read_text())["auto_map"]))
    out_console.print(f"exported to {out}; load it with transformers alone: {cls}.from_pretrained({str(out)!r}, trust_remote_code=True)")


@app.command(name="data")
def data_(
    path: Path = typer.Argument(..., help="a dataset, as --data takes it"),
    split: str = typer.Option("train", help="split to read from a dataset of several (train; validation, val, valid, dev or eval, which read whichever of those there is; or test, which reads the same or else test)"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    label_field: Optional[str] = typer.Option(None, "--label-field", help=LABEL_FIELD_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the description as JSON on stdout"),
) -> None:
    """What pela reads from a dataset: its examples, the columns it uses, its classes, the first example."""
    from pela.data.datasets import describe

    info = describe(_load_data(path, split=split, text_field=text_field, label_field=label_field, progress=not as_json))
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


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="where the demo writes its models and report"),
    quick: bool = typer.Option(False, "--quick", help="the same pipeline on a small slice, in about 2 minutes"),
    ratio: float = typer.Option(2.0, help="compression ratio k"),
    overwrite: bool = typer.Option(True, "--overwrite/--no-overwrite", help="replace an earlier demo run in OUT"),
) -> None:
    """The whole PELA pipeline, offline, on all-MiniLM-L6-v2 and WordNet: compress, distill, fine-tune, compare."""
    from pela.demo import run_demo

    run_demo(out, quick=quick, ratio=ratio, overwrite=overwrite, console=out_console)


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split("\n")[0].split())


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001 - warnings' signature
    """pela's own warnings as one ``warning: …`` line; anyone else's as Python shows them."""
    if str(filename).startswith(_PELA_DIR):
        return f"warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning
_PELA_DIR = str(Path(__file__).parent.parent) + os.sep  # as Python names the files it imports from here


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns user mistakes into ``error: …`` and exit code 2."""
    args = (sys.argv[1:] if argv is None else argv) or ["--help"]
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # pela reports what matters itself
    warnings.formatwarning = _format_warning
    keep_freed_memory()  # CPU activations reused, not page-faulted in again each pass (see pela.allocator)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        app(args=args, prog_name="pela", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as e:  # usage errors: unknown option, bad value, missing argument
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        print(f"error: {_one_line(Exception(message))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (PelaError, ValueError, TypeError, OSError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
