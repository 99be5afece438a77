"""``pela compress`` and ``pela bench``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Column, Table

from pela.arch.inputs import DEFAULT_SEQ_LEN
from pela.bench import COMPILE_MODES, benchmark, generation_benchmark
from pela.cli.common import (
    ALLOW_PICKLE_HELP,
    CHECKPOINT_HELP,
    SAVE_DTYPE_HELP,
    TEXT_FIELD_HELP,
    TRUST_HELP,
    _half_precision_note,
    _load_data,
    _opt_str,
    _saved,
    _shapes_text,
    command,
    optional_step,
    out_console,
)
from pela.compression.calibrate import calibrate
from pela.compression.compress import compress as _compress
from pela.compression.config import LowRankConfig
from pela.compression.inits import NEEDS_CALIBRATION
from pela.compression.plot import plot_compression
from pela.compression.recipe import recipe
from pela.data.collate import Collator
from pela.errors import PelaError
from pela.models.saving import save_dtype as _save_dtype
from pela.models.saving import save_pretrained
from pela.models.sources import load_for_training
from pela.training.record import compression_record
from pela.utils.device import resolve_device
from pela.utils.figures import check_figure_path
from pela.utils.files import check_not_input, check_output_dir
from pela.utils.memory import keep_freed_memory
from pela.utils.progress import activity


@command()
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
    calib_batch_size: int = typer.Option(16, "--calib-batch-size", help="calibration examples per pass (fewer: less memory)"),
    uniform_ranks: bool = typer.Option(False, "--uniform-ranks", help="with --calib, keep one ratio for every layer instead of "
                                       "allocating the same number of parameters across layers by measured sensitivity"),
    sequential: bool = typer.Option(False, "--sequential", help="with --calib, factorize block by block, each layer fit to the "
                                    "original's outputs from the inputs the compressed layers before it give (slower, closer)"),
    sensitivity: Optional[str] = typer.Option(None, help="how allocation measures what each layer's error costs: replay (exact, "
                                              "a re-run per layer; the default) or gradient (first order, a few backward passes for all layers)"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="truncate calibration text to this many tokens"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="draw per-layer ranks and spectra to this .png/.pdf/.svg"),
    device: Optional[str] = typer.Option(None, help="where to run the factorization math (cpu, cuda)"),
    save_dtype: Optional[str] = typer.Option(None, "--save-dtype", help=SAVE_DTYPE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
) -> None:
    """Factorize a model's linear layers (PELA stage 1) and save it."""

    _check_calibration_flags(calib, sequential, uniform_ranks, sensitivity)
    if device is not None:
        resolve_device(device)
    config = LowRankConfig(ratio=ratio, rank=rank, energy=energy, param_budget=param_budget, align=align, include=tuple(include or ()),
                           exclude=tuple(exclude) if exclude else None, device=device, init=init or ("whiten" if calib else "svd"),
                           sequential=sequential, sensitivity=sensitivity or "replay")
    needs_calib = config.init in NEEDS_CALIBRATION or config.param_budget is not None
    if needs_calib and calib is None:
        raise PelaError(f"{'--param-budget' if config.param_budget is not None else '--init ' + config.init} needs calibration data: add --calib DATA")
    if calib is not None and not needs_calib:
        raise PelaError("--calib is used by --init whiten and --param-budget; with --init svd and a per-layer rule it would be ignored")
    for flag, value in (("--calib-samples", calib_samples), ("--calib-batch-size", calib_batch_size), ("--max-length", max_length)):
        if value is not None and value < 1:
            raise PelaError(f"{flag} must be >= 1, got {value}")
    if plot is not None:
        check_figure_path(plot)
    check_not_input(out, {"the model": source, "--calib": calib, "--checkpoint": checkpoint})
    check_output_dir(out, overwrite)  # fail before the slow part
    _save_dtype(save_dtype)
    calib_data = _load_data(calib, text_field=text_field, progress=True) if calib is not None else None
    with activity(f"loading {source}"):
        model = load_for_training(source, checkpoint=_opt_str(checkpoint), random_init=random_init, allow_pickle=allow_pickle,
                           trust_remote_code=trust_remote_code)
    calibration = None
    if calib_data is not None:
        config = recipe(model, calibrated=True, uniform=uniform_ranks, **config.to_dict())
        collate = Collator(model, max_length=max_length)
        collate.check(calib_data, f"--calib {calib}")
        calibration = calibrate(model, calib_data, config, collate_fn=collate, samples=calib_samples,
                                batch_size=calib_batch_size, progress=True)
    report = _compress(model, config, calibration=calibration, progress=True)
    save_pretrained(model, out, overwrite=overwrite, extra={"compression": compression_record(report)}, dtype=save_dtype)
    if plot is not None:  # an extra, after the model is safe
        with optional_step(f"the plot {plot}"):
            plot_compression(report, plot)
    _half_precision_note(model, save_dtype)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    out_console.print(_layer_table(report, config.init))
    out_console.print(f"{report.summary()}\nsaved to {_saved(out)}")


def _check_calibration_flags(calib: Optional[Path], sequential: bool, uniform_ranks: bool, sensitivity: Optional[str]) -> None:
    """The settings of calibrated compression, refused without calibration data (they would do
    nothing)."""
    if sequential and calib is None:
        raise PelaError("--sequential fits each layer on calibration inputs: add --calib DATA")
    for flag, given in (("--uniform-ranks", uniform_ranks), ("--sensitivity", sensitivity is not None)):
        if given and calib is None:
            raise PelaError(f"{flag} is a setting of allocation across layers, which measures them on calibration data: "
                            "add --calib DATA")
    if uniform_ranks and sensitivity is not None:
        raise PelaError("--sensitivity measures layers to allocate ranks across them, which --uniform-ranks turns off")


def _layer_table(report: Any, init: str) -> Table:
    rows = next((r.serve_rows for r in report.layers if r.serve_rows), None)
    caption = "rel. error: of the weights (svd), of the outputs on the calibration data (whiten)"
    if rows:
        caption += (f"\ntime: the factors' product against the dense one, {rows} rows at a time on "
                    "this device (measured, cached in $PELA_CACHE/products)")
    table = Table(Column("layer", overflow="fold"), "in", "out", "rank", "init", "rel. error",
                  "time", "note", title="pela compress", caption=caption)
    for r in report.layers:
        # e.g. CLIP's text tower, calibrated on images alone
        unreached = r.init is not None and r.init != init
        note = r.reason or (f"no calibration input reached it: {r.init}, not {init}" if unreached else "")
        time = "" if r.ms_dense is None else f"{r.ms_factored / r.ms_dense:.2f}×"
        rank = "dense" if r.rank is None else str(r.rank)
        error = "" if r.rel_error is None else f"{r.rel_error:.4f}"
        table.add_row(r.name, str(r.in_features), str(r.out_features), rank, r.init or "", error, time,
                      note)
    return table


# every model measured is laid out the same way, so the ratio is the models', not the layout's
LAYOUT_CAPTION = "weights of every model stored in the order this device multiplies fastest (pela.tune_layout)"


@command()
def bench(
    model: str = typer.Argument(..., help="model to measure (timm:NAME, hf:ID, or a directory)"),
    vs: Optional[str] = typer.Option(None, "--vs", help="a second model measured side by side; ratio = MODEL / VS"),
    batch_size: int = typer.Option(32, "--batch-size"),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="sequence length for text models (default: 128, or the "
                                          "model's positions if fewer; with --generate, the prompt's)"),
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
    generate: bool = typer.Option(False, "--generate", help="a language model's generation speed instead: prefill and decode "
                                  "tokens/s (prompts of --seq-len tokens, --new-tokens greedy steps, batch --batch-size)"),
    new_tokens: int = typer.Option(64, "--new-tokens", help="with --generate: tokens written after each prompt"),
    onnx: bool = typer.Option(False, "--onnx", help="also time each model in ONNX Runtime, float32 and int8 weights "
                              "(CPU; exported and checked first, as pela export --format onnx does)"),
) -> None:
    """Throughput (items/s) and peak memory of a model, or of two side by side; --generate: prefill
    and decode speed."""
    resolve_device(device)

    for flag, value in (("--batch-size", batch_size), ("--seq-len", seq_len), ("--iters", iters), ("--rounds", rounds)):
        if value is not None and value < 1:
            raise PelaError(f"{flag} must be >= 1, got {value}")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise PelaError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
    if generate and onnx:
        raise PelaError("--onnx times encoders and vision models; a language model's generation runs in PyTorch")
    sources = [model] + ([vs] if vs else [])
    models = {}
    for s in sources:
        with activity(f"loading {s}"):
            models[s if s not in models else s + " (2)"] = load_for_training(s, random_init=random_init and not Path(s).is_dir(),
                                                                    trust_remote_code=trust_remote_code)
    if generate:
        return _bench_generation(models, seq_len or DEFAULT_SEQ_LEN, new_tokens, batch_size, device, dtype, rounds, as_json,
                                 compile, compile_mode)
    results = benchmark(models, batch_size=batch_size, device=device, dtype=dtype, compile=compile, seq_len=seq_len, iters=iters, rounds=rounds,
                        compile_mode=compile_mode, progress=True, onnx=onnx)
    ratios = _ratios(results) if vs else {}
    ratio = ratios.get("pytorch", {}).get("throughput")
    memory_ratio = ratios.get("pytorch", {}).get("memory")
    if as_json:
        print(json.dumps({"results": [r.to_dict() for r in results], "ratio": ratio, "memory_ratio": memory_ratio,
                          "ratios": ratios,
                          # idempotent; says whether it applies
                          "keep_freed_memory": keep_freed_memory()}, indent=2))
        return
    # once when both models take the same
    inputs = "; ".join(dict.fromkeys(_shapes_text(r.input_shapes) for r in results))
    caption = f"inputs: {inputs}" + ("" if results[0].device != "cpu" else "\n" + (
        "freed memory kept for reuse (PELA_KEEP_FREED_MEMORY=0: glibc's default)" if keep_freed_memory() else "the C library's default allocator")
        + "\npeak memory: the tensors live at once in one eager pass (weights, inputs, activations)") + "\n" + LAYOUT_CAPTION
    # two directories often share a long prefix: fold a long name onto more lines rather than cut it
    table = Table(Column("model", overflow="fold"), "runtime", "params", "items/s", "ms/batch", "rounds (ms/batch)", "peak memory",
                  "weights", caption=caption,
                  title=f"pela bench ({results[0].device}, {dtype}, batch {batch_size}{', compiled' if results[0].compiled else ''}{f' ({compile_mode})' if compile_mode else ''})")
    for r in results:
        mem = "" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / 2**20:,.0f} MiB"
        spread = f"{min(r.round_ms):,.1f}–{max(r.round_ms):,.1f}" if len(r.round_ms) > 1 else "one round"
        table.add_row(r.name, r.runtime, f"{r.params:,}", f"{r.items_per_s:,.1f}", f"{r.ms_per_batch:.1f}", spread, mem,
                      f"{r.file_bytes / 1e6:,.1f} MB")
    out_console.print(table)
    names = list(dict.fromkeys(r.name for r in results))
    for runtime, ratio in ratios.items():
        memory = f"; peak memory ratio {ratio['memory']:.2f}×" if ratio.get("memory") else ""
        out_console.print(f"{runtime}: throughput ratio {names[0]} / {names[1]}: [bold]{ratio['throughput']:.2f}×[/bold]; "
                          f"weights {ratio['weights']:.2f}×{memory}")
    if onnx:
        best = max(results[:len(results) // 2], key=lambda r: r.items_per_s)
        base = next(r for r in results if r.name == names[1] and r.runtime == "pytorch")
        out_console.print(f"{names[0]} in {best.runtime} against {names[1]} in pytorch: [bold]{best.items_per_s / base.items_per_s:.2f}×[/bold]")


def _ratios(results: list) -> dict:
    """Per runtime, the first model's throughput, weights and peak memory over the second's."""
    names = list(dict.fromkeys(r.name for r in results))
    by = {(r.name, r.runtime): r for r in results}
    out = {}
    for runtime in dict.fromkeys(r.runtime for r in results):
        a, b = by[names[0], runtime], by[names[1], runtime]
        out[runtime] = {"throughput": a.items_per_s / b.items_per_s, "weights": a.file_bytes / b.file_bytes,
                        "memory": a.peak_memory_bytes / b.peak_memory_bytes if a.peak_memory_bytes and b.peak_memory_bytes else None}
    return out


def _bench_generation(models: dict, prompt_tokens: int, new_tokens: int, batch_size: int, device: str, dtype: str, rounds: int,
                      as_json: bool, compile: bool, compile_mode: str | None) -> None:
    results = generation_benchmark(models, prompt_tokens=prompt_tokens, new_tokens=new_tokens, batch_size=batch_size, device=device,
                                   dtype=dtype, rounds=rounds, progress=True, compile=compile, compile_mode=compile_mode)
    ratios = {k: getattr(results[0], k) / getattr(results[1], k) for k in ("prefill_tokens_per_s", "decode_tokens_per_s")} if len(results) > 1 else None
    if as_json:
        print(json.dumps({"results": [r.to_dict() for r in results], "ratios": ratios}, indent=2))
        return
    table = Table(Column("model", overflow="fold"), "params", "prefill tokens/s", "decode tokens/s", "ms / new token",
                  title=f"pela bench --generate ({results[0].device}, {dtype}, batch {batch_size}, {prompt_tokens}-token prompts, "
                        f"{new_tokens} new tokens, median of {rounds} rounds{', compiled' if results[0].compiled else ''})",
                  caption=LAYOUT_CAPTION)
    for r in results:
        table.add_row(r.name, f"{r.params:,}", f"{r.prefill_tokens_per_s:,.0f}", f"{r.decode_tokens_per_s:,.1f}", f"{r.decode_ms_per_token:.1f}")
    out_console.print(table)
    if ratios:
        out_console.print(f"{results[0].name} / {results[1].name}: prefill [bold]{ratios['prefill_tokens_per_s']:.2f}×[/bold], "
                          f"decode [bold]{ratios['decode_tokens_per_s']:.2f}×[/bold]")
