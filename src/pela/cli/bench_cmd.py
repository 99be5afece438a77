"""``pela bench``: a model's speed, memory and size, or two side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Column, Table

from pela.arch.inputs import DEFAULT_BATCH, DEFAULT_SEQ_LEN
from pela.bench import COMPILE_MODES, benchmark, generation_benchmark
from pela.cli.common import TRUST_HELP, _check_counts, _shapes_text, command, out_console
from pela.cli.config_file import setting
from pela.errors import PelaError
from pela.models.sources import load_for_training
from pela.utils.device import resolve_device
from pela.utils.memory import keep_freed_memory
from pela.utils.progress import activity

# every model measured is laid out the same way, so the ratio is the models', not the layout's
LAYOUT_CAPTION = ("weights of every model stored in the order this device multiplies fastest "
                  "(pela.tune_layout; an int8 model: as torchao stored them)")
SEQ_LEN_HELP = ("sequence length for text models (default: 128, or the model's positions if fewer; "
                "with --generate, the prompt's)")
GENERATE_HELP = ("a language model's generation speed instead: prefill and decode tokens/s "
                 "(prompts of --seq-len tokens, new_tokens greedy steps, batch --batch-size)")
ONNX_HELP = ("also time each model in ONNX Runtime, float32 and int8 weights (CPU; exported and "
             "checked first, as pela export --format onnx does), and with int8 weights in PyTorch; "
             "with --generate, a language model's prefill and decode in ONNX Runtime")
INT8_HELP = ("also time each model with int8 weights in PyTorch (pela.quantize_int8, torchao; "
             "compiled with --compile, which is where int8 pays off on a CPU); default: with "
             "--onnx")
MODE_HELP = ("torch.compile mode (default, reduce-overhead, max-autotune, "
             "max-autotune-no-cudagraphs); implies --compile. Without one, a decoding step on a "
             "CPU is compiled with inductor's C++ wrapper (no Python between its kernels)")


@command()
def bench(
    model: str = typer.Argument(..., help="model to measure (timm:NAME, hf:ID, or a directory)"),
    vs: Optional[str] = typer.Option(
        None, "--vs", help="a second model measured side by side; ratio = MODEL / VS"),
    batch_size: int = typer.Option(DEFAULT_BATCH, "--batch-size"),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help=SEQ_LEN_HELP),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile both models first"),
    generate: bool = typer.Option(False, "--generate", help=GENERATE_HELP),
    onnx: bool = typer.Option(False, "--onnx", help=ONNX_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="print results as JSON on stdout"),
    compile_mode: Optional[str] = setting(None, MODE_HELP),
    new_tokens: int = setting(64, "with --generate: tokens written after each prompt"),
    iters: int = setting(5, "forward passes per round"),
    rounds: int = setting(3, "interleaved rounds; each model's median round counts"),
    random_init: bool = setting(False, "build timm:/hf: sources without pretrained weights"),
    int8: Optional[bool] = setting(None, INT8_HELP),
) -> None:
    """Throughput (items/s), peak memory and size of a model, or of two side by side; --onnx: in
    ONNX Runtime and with int8 weights too; --generate: prefill and decode speed."""
    _check_flags(device, batch_size, seq_len, iters, rounds, compile_mode)
    if generate and int8:
        raise PelaError("int8=true times throughput: for generation, bench the int8 model itself "
                        "(pela export MODEL --format pela --int8)")
    int8 = onnx if int8 is None else int8
    models = {}
    for s in [model] + ([vs] if vs else []):
        with activity(f"loading {s}"):
            loaded = load_for_training(s, random_init=random_init and not Path(s).is_dir(),
                                       trust_remote_code=trust_remote_code)
        models[s if s not in models else s + " (2)"] = loaded
    if generate:
        return _bench_generation(models, seq_len or DEFAULT_SEQ_LEN, new_tokens, batch_size, device,
                                 dtype, rounds, as_json, compile, compile_mode, onnx)
    results = benchmark(models, batch_size=batch_size, device=device, dtype=dtype, compile=compile,
                        seq_len=seq_len, iters=iters, rounds=rounds, compile_mode=compile_mode,
                        progress=True, onnx=onnx, int8=int8)
    ratios = _ratios(results) if vs else {}
    if as_json:
        pytorch = ratios.get("pytorch", {})
        print(json.dumps({"results": [r.to_dict() for r in results],
                          "ratio": pytorch.get("throughput"), "memory_ratio": pytorch.get("memory"),
                          "ratios": ratios,
                          # idempotent; says whether it applies
                          "keep_freed_memory": keep_freed_memory()}, indent=2))
        return
    out_console.print(_table(results, dtype, batch_size, compile_mode))
    _print_ratios(results, ratios)


def _check_flags(device: str, batch_size: int, seq_len: int | None, iters: int, rounds: int,
                 compile_mode: str | None) -> None:
    resolve_device(device)
    _check_counts({"--batch-size": batch_size, "--seq-len": seq_len, "iters": iters,
                   "rounds": rounds})
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        modes = ", ".join(COMPILE_MODES)
        raise PelaError(f"compile_mode must be one of {modes}, got {compile_mode!r}")


def _table(results: list, dtype: str, batch_size: int, compile_mode: str | None) -> Table:
    # once when both models take the same
    inputs = "; ".join(dict.fromkeys(_shapes_text(r.input_shapes) for r in results))
    caption = f"inputs: {inputs}"
    if results[0].device == "cpu":
        caption += "\n" + ("freed memory kept for reuse (PELA_KEEP_FREED_MEMORY=0: glibc's default)"
                           if keep_freed_memory() else "the C library's default allocator")
        caption += ("\npeak memory: the tensors live at once in one eager pass (weights, inputs, "
                    "activations)")
        if any(r.runtime.startswith("onnxruntime") for r in results):
            caption += ("; ONNX Runtime: the resident memory a fresh process gains loading the "
                        "graph and running one batch")
    caption += "\n" + LAYOUT_CAPTION
    how = ", compiled" if results[0].compiled else ""
    how += f" ({compile_mode})" if compile_mode else ""
    title = f"pela bench ({results[0].device}, {dtype}, batch {batch_size}{how})"
    runtimes = len({r.runtime for r in results}) > 1
    headers = ["model"] + (["runtime"] if runtimes else []) + [
        "params", "items/s", "ms/batch", "rounds (ms/batch)", "peak memory", "weights"]
    # two directories often share a long prefix: fold a long name onto more lines rather than cut
    # it, and headers too on a narrow terminal
    table = Table(*(Column(h, overflow="fold") for h in headers), caption=caption, title=title)
    for r in results:
        mem = "" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / 2**20:,.0f} MiB"
        spread = (f"{min(r.round_ms):,.1f}–{max(r.round_ms):,.1f}" if len(r.round_ms) > 1
                  else "one round")
        cells = [r.name] + ([r.runtime] if runtimes else []) + [
            f"{r.params:,}", f"{r.items_per_s:,.1f}", f"{r.ms_per_batch:.1f}", spread, mem,
            f"{r.file_bytes / 1e6:,.1f} MB"]
        table.add_row(*cells)
    return table


def _pairs(results: list) -> dict[str, tuple]:
    """Per runtime, the first model's result and the second's (none for one model)."""
    names = list(dict.fromkeys(r.name for r in results))
    if len(names) < 2:
        return {}
    by = {(r.name, r.runtime): r for r in results}
    return {runtime: (by[names[0], runtime], by[names[1], runtime])
            for runtime in dict.fromkeys(r.runtime for r in results)}


def _ratios(results: list) -> dict:
    """Per runtime, the first model's throughput, weights and peak memory over the second's."""
    out = {}
    for runtime, (a, b) in _pairs(results).items():
        memory = None
        if a.peak_memory_bytes and b.peak_memory_bytes:
            memory = a.peak_memory_bytes / b.peak_memory_bytes
        out[runtime] = {"throughput": a.items_per_s / b.items_per_s,
                        "weights": a.file_bytes / b.file_bytes, "memory": memory}
    return out


def _print_ratios(results: list, ratios: dict) -> None:
    if not ratios:
        return
    first, second = list(dict.fromkeys(r.name for r in results))
    for runtime, ratio in ratios.items():
        memory = f"; peak memory ratio {ratio['memory']:.2f}×" if ratio["memory"] else ""
        out_console.print(f"{runtime}: throughput ratio {first} / {second}: "
                          f"[bold]{ratio['throughput']:.2f}×[/bold]; weights "
                          f"{ratio['weights']:.2f}×{memory}")
    if len(ratios) > 1:  # what a user deploying it would compare: its best against the original
        best = max((r for r in results if r.name == first), key=lambda r: r.items_per_s)
        base = next(r for r in results if r.name == second and r.runtime == "pytorch")
        out_console.print(f"{first} in {best.runtime} against {second} in pytorch: "
                          f"[bold]{best.items_per_s / base.items_per_s:.2f}×[/bold]")


def _bench_generation(models: dict, prompt_tokens: int, new_tokens: int, batch_size: int,
                      device: str, dtype: str, rounds: int, as_json: bool, compile: bool,
                      compile_mode: str | None, onnx: bool) -> None:
    results = generation_benchmark(models, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                                   batch_size=batch_size, device=device, dtype=dtype, rounds=rounds,
                                   progress=True, compile=compile, compile_mode=compile_mode,
                                   onnx=onnx)
    by_runtime = _generation_ratios(results)
    if as_json:
        print(json.dumps({"results": [r.to_dict() for r in results],
                          "ratios": by_runtime.get("pytorch"), "runtime_ratios": by_runtime},
                         indent=2))
        return
    how = ", compiled" if results[0].compiled else ""
    title = (f"pela bench --generate ({results[0].device}, {dtype}, batch {batch_size}, "
             f"{prompt_tokens}-token prompts, {new_tokens} new tokens, median of {rounds} "
             f"rounds{how})")
    runtimes = len({r.runtime for r in results}) > 1
    headers = ["model"] + (["runtime"] if runtimes else []) + [
        "params", "prefill tokens/s", "decode tokens/s", "ms / new token"]
    table = Table(Column(headers[0], overflow="fold"), *headers[1:], title=title,
                  caption=LAYOUT_CAPTION + ("; ONNX Runtime: its graph as exported" if runtimes
                                            else ""))
    for r in results:
        table.add_row(r.name, *([r.runtime] if runtimes else []), f"{r.params:,}",
                      f"{r.prefill_tokens_per_s:,.0f}", f"{r.decode_tokens_per_s:,.1f}",
                      f"{r.decode_ms_per_token:.1f}")
    out_console.print(table)
    names = list(dict.fromkeys(r.name for r in results))
    for runtime, ratio in by_runtime.items():
        out_console.print(f"{names[0]} / {names[1]}" + (f" ({runtime})" if runtimes else "")
                          + f": prefill [bold]{ratio['prefill_tokens_per_s']:.2f}×[/bold], decode "
                          f"[bold]{ratio['decode_tokens_per_s']:.2f}×[/bold]")


def _generation_ratios(results: list) -> dict:
    """Per runtime, the first model's prefill and decode speed over the second's (none for one
    model)."""
    keys = ("prefill_tokens_per_s", "decode_tokens_per_s")
    return {runtime: {k: getattr(a, k) / getattr(b, k) for k in keys}
            for runtime, (a, b) in _pairs(results).items()}
