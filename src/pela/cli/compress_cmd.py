"""``pela compress`` and ``pela bench``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Column, Table

from pela.cli.common import (
    ALLOW_PICKLE_HELP,
    CHECKPOINT_HELP,
    SAVE_DTYPE_HELP,
    TEXT_FIELD_HELP,
    TRUST_HELP,
    _check_counts,
    _collator,
    _half_precision_note,
    _load_data,
    _opt_str,
    _saved,
    command,
    optional_step,
    out_console,
)
from pela.cli.config_file import setting
from pela.compression.calibrate import calibrate
from pela.compression.compress import compress as _compress
from pela.compression.config import LowRankConfig
from pela.compression.inits import NEEDS_CALIBRATION
from pela.compression.plot import plot_compression
from pela.compression.recipe import recipe
from pela.errors import PelaError
from pela.models.saving import save_dtype as _save_dtype
from pela.models.saving import save_pretrained
from pela.models.sources import load_for_training
from pela.training.record import compression_record
from pela.utils.device import resolve_device
from pela.utils.figures import check_figure_path
from pela.utils.files import check_not_input, check_output_dir
from pela.utils.progress import activity

CALIB_HELP = "calibration examples (same formats as pela distill --data)"
BUDGET_HELP = (
    "keep this fraction of the factorizable parameters, ranks allocated across layers by measured "
    "sensitivity (needs --calib)"
)
ALIGN_HELP = (
    "round ranks to a multiple of this (1 = exact paper ranks, which a GPU can run several times "
    "slower)"
)
INIT_HELP = (
    "svd (weights) or whiten (outputs on --calib data); default whiten with --calib, else svd"
)
UNIFORM_HELP = (
    "with --calib, keep one ratio for every layer instead of allocating the same number of "
    "parameters across layers by measured sensitivity"
)
SEQUENTIAL_HELP = (
    "with --calib, factorize block by block, each layer fit to the original's outputs from the "
    "inputs the compressed layers before it give (slower, closer)"
)
SPEEDUP_HELP = (
    "make the model this many times faster where it is served, on this device: the most "
    "parameters measured to meet it (allocated by sensitivity with --calib)"
)
SENSITIVITY_HELP = (
    "how allocation measures what each layer's error costs: replay (exact, a re-run per layer; "
    "the default) or gradient (first order, a few backward passes for all layers)"
)


@command()
def compress(
    source: str = typer.Argument(..., help="timm:NAME, hf:ORG/NAME, or a local model directory"),
    out: Path = typer.Option(..., "--out", help="directory to write the compressed model to"),
    ratio: Optional[float] = typer.Option(None, help="compression ratio k of a layer (default 2)"),
    rank: Optional[int] = typer.Option(None, help="one rank for every layer"),
    calib: Optional[Path] = typer.Option(None, "--calib", help=CALIB_HELP),
    param_budget: Optional[float] = typer.Option(None, "--param-budget", help=BUDGET_HELP),
    exclude: Optional[List[str]] = typer.Option(
        None, help="regex of layers to keep dense (replaces the defaults)"),
    include: Optional[List[str]] = typer.Option(
        None, help="regex of layers to factorize (only these)"),
    checkpoint: Optional[Path] = typer.Option(None, help=CHECKPOINT_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    plot: Optional[Path] = typer.Option(
        None, "--plot", help="draw per-layer ranks and spectra to this .png/.pdf/.svg"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
    random_init: bool = setting(False, "no pretrained weights (smoke tests, benchmarks)"),
    energy: Optional[float] = setting(
        None, "keep this fraction of each layer's singular-value energy"),
    speedup: Optional[float] = setting(None, SPEEDUP_HELP),
    align: int = setting(8, ALIGN_HELP),
    init: Optional[str] = setting(None, INIT_HELP),
    calib_samples: int = setting(512, "calibration examples to use"),
    calib_batch_size: int = setting(16, "calibration examples per pass (fewer: less memory)"),
    uniform_ranks: bool = setting(False, UNIFORM_HELP),
    sequential: bool = setting(False, SEQUENTIAL_HELP),
    sensitivity: Optional[str] = setting(None, SENSITIVITY_HELP),
    text_field: Optional[str] = setting(None, TEXT_FIELD_HELP),
    max_length: Optional[int] = setting(None, "truncate calibration text to this many tokens"),
    device: Optional[str] = setting(None, "where to run the factorization math (cpu, cuda)"),
    allow_pickle: bool = setting(False, ALLOW_PICKLE_HELP),
    save_dtype: Optional[str] = setting(None, SAVE_DTYPE_HELP),
) -> None:
    """Factorize a model's linear layers (PELA stage 1) and save it."""
    _check_calibration_flags(calib, sequential, uniform_ranks, sensitivity)
    config = _config(ratio, rank, energy, param_budget, speedup, align, include, exclude, device,
                     init, sequential, sensitivity, calib)
    _check_counts({"calib_samples": calib_samples, "calib_batch_size": calib_batch_size,
                   "max_length": max_length})
    if plot is not None:
        check_figure_path(plot)
    check_not_input(out, {"the model": source, "--calib": calib, "--checkpoint": checkpoint})
    check_output_dir(out, overwrite)  # fail before the slow part
    _save_dtype(save_dtype)
    calib_data = None if calib is None else _load_data(calib, text_field=text_field, progress=True)
    with activity(f"loading {source}"):
        model = load_for_training(source, checkpoint=_opt_str(checkpoint), random_init=random_init,
                                  allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    calibration = None
    if calib_data is not None:
        config = recipe(model, calibrated=True, uniform=uniform_ranks, **config.to_dict())
        collate = _collator(model, max_length, {f"--calib {calib}": calib_data})
        calibration = calibrate(model, calib_data, config, collate_fn=collate,
                                samples=calib_samples, batch_size=calib_batch_size, progress=True)
    report = _compress(model, config, calibration=calibration, progress=True)
    extra = {"compression": compression_record(report)}
    save_pretrained(model, out, overwrite=overwrite, extra=extra, dtype=save_dtype)
    if plot is not None:  # an extra, after the model is safe
        with optional_step(f"the plot {plot}"):
            plot_compression(report, plot)
    _half_precision_note(model, save_dtype)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    out_console.print(_layer_table(report, config.init))
    out_console.print(f"{report.summary()}\nsaved to {_saved(out)}")


def _config(ratio: Optional[float], rank: Optional[int], energy: Optional[float],
            param_budget: Optional[float], speedup: Optional[float], align: int,
            include: Optional[List[str]], exclude: Optional[List[str]], device: Optional[str],
            init: Optional[str],
            sequential: bool, sensitivity: Optional[str], calib: Optional[Path]) -> LowRankConfig:
    """The command's `LowRankConfig`, refused where it needs calibration data it has not got,
    or would ignore the data it has."""
    if device is not None:
        resolve_device(device)
    config = LowRankConfig(
        ratio=ratio, rank=rank, energy=energy, param_budget=param_budget, speedup=speedup,
        align=align,
        include=tuple(include or ()), exclude=tuple(exclude) if exclude else None, device=device,
        init=init or ("whiten" if calib else "svd"), sequential=sequential,
        sensitivity=sensitivity or "replay",
    )
    needs_calib = config.init in NEEDS_CALIBRATION or config.param_budget is not None
    if needs_calib and calib is None:
        what = "--param-budget" if config.param_budget is not None else f"init={config.init}"
        raise PelaError(f"{what} needs calibration data: add --calib DATA")
    if calib is not None and not needs_calib and speedup is None:
        raise PelaError("--calib is used by init=whiten, --param-budget and speedup; with "
                        "init=svd and a per-layer rule it would be ignored")
    return config


def _check_calibration_flags(calib: Optional[Path], sequential: bool, uniform_ranks: bool,
                             sensitivity: Optional[str]) -> None:
    """The settings of calibrated compression, refused without calibration data (they would do
    nothing)."""
    if sequential and calib is None:
        raise PelaError("sequential fits each layer on calibration inputs: add --calib DATA")
    for flag, given in (("uniform_ranks", uniform_ranks), ("sensitivity", sensitivity is not None)):
        if given and calib is None:
            raise PelaError(f"{flag} is a setting of allocation across layers, which measures "
                            "them on calibration data: add --calib DATA")
    if uniform_ranks and sensitivity is not None:
        raise PelaError("sensitivity measures layers to allocate ranks across them, which "
                        "uniform_ranks turns off")


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
        note = r.reason or (f"no calibration input reached it: {r.init}, not {init}"
                            if unreached else "")
        time = "" if r.ms_dense is None else f"{r.ms_factored / r.ms_dense:.2f}×"
        rank = "dense" if r.rank is None else str(r.rank)
        error = "" if r.rel_error is None else f"{r.rel_error:.4f}"
        table.add_row(r.name, str(r.in_features), str(r.out_features), rank, r.init or "", error,
                      time, note)
    return table
