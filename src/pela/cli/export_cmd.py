"""``pela export``: a model to ship, as a Hugging Face directory, an ONNX graph or an int8 pela
directory."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pela.cli.common import command, out_console
from pela.cli.config_file import setting
from pela.deploy.onnx import export_onnx
from pela.deploy.torch_int8 import save_int8
from pela.errors import PelaError
from pela.layers.int8 import MODES
from pela.models.export import export_hf
from pela.models.saving import save_pretrained
from pela.models.sources import load_for_training
from pela.utils.files import check_not_input, check_output_dir
from pela.utils.progress import activity

EXPORT_FORMATS = ("hf", "onnx", "pela")
EXPORT_MODEL_HELP = (
    "hf: a pela directory of a transformers model (from compress, distill or finetune); onnx and "
    "pela: any model pela loads (a pela directory, the original)"
)
FORMAT_HELP = (
    "hf: a Hugging Face directory that loads without pela (trust_remote_code=True); onnx: "
    "model.onnx for ONNX Runtime, checked against the model; pela: a pela directory (pela.load, "
    "pela eval, pela bench), with --int8 its linear layers in int8 (torchao)"
)
INT8_HELP = (
    "int8 weights and dynamic int8 activations: with --format onnx ONNX Runtime's quantizer, with "
    "--format pela torchao's"
)
INT8_MODE_HELP = (
    "with --int8 --format pela: dynamic (int8 weights and products) or weight (int8 weights, "
    "products in float, for hardware without fast int8 products)"
)


@command()
def export(
    model: str = typer.Argument(..., help=EXPORT_MODEL_HELP),
    out: Path = typer.Option(..., "--out", help="the directory to write"),
    format: str = typer.Option("hf", "--format", help=FORMAT_HELP),
    int8: bool = typer.Option(False, "--int8", help=INT8_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
    int8_mode: str = setting("dynamic", INT8_MODE_HELP),
) -> None:
    """Ship a model: a Hugging Face directory that loads without pela, an ONNX graph for ONNX
    Runtime, or a pela directory with int8 weights."""
    if format not in EXPORT_FORMATS:
        raise PelaError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    if int8 and format == "hf":
        raise PelaError("--int8 quantizes an ONNX graph or a pela directory: add --format onnx "
                        "or --format pela")
    if int8_mode not in MODES:
        raise PelaError(f"int8_mode must be one of {', '.join(MODES)}, got {int8_mode!r}")
    if format == "hf":
        export_hf(Path(model), out, overwrite=overwrite)
        cls = next(iter(json.loads((out / "config.json").read_text())["auto_map"]))
        out_console.print(f"exported to {out}; load it with transformers alone: "
                          f"{cls}.from_pretrained({str(out)!r}, trust_remote_code=True)")
        return
    if Path(model).is_dir():
        check_not_input(out, {"model": Path(model)})
    check_output_dir(out, overwrite)  # before loading: a taken --out is the user's to settle first
    with activity(f"loading {model}"):
        loaded = load_for_training(model)
    if format == "onnx":
        _export_onnx(loaded, out, overwrite, int8)
    elif int8:
        _export_int8(loaded, out, overwrite, int8_mode)
    else:
        out_console.print(f"saved to {save_pretrained(loaded, out, overwrite=overwrite)}")


def _export_onnx(loaded: object, out: Path, overwrite: bool, int8: bool) -> None:
    with activity("exporting to ONNX and checking it with ONNX Runtime"):
        record = export_onnx(loaded, out, overwrite=overwrite, int8=int8)
    out_console.print(
        f"exported to {record.path} (inputs {', '.join(record.inputs)}; outputs "
        f"{', '.join(record.outputs)}); ONNX Runtime matches the model to "
        f"{record.max_abs_difference:.1e}")
    if record.int8:
        out_console.print(
            f"int8: outputs within {record.int8_max_abs_difference:.1e} of the float32 model's "
            f"({100 * record.int8_relative_error:.2f}% of their norm)")


def _export_int8(loaded: object, out: Path, overwrite: bool, mode: str) -> None:
    with activity(f"quantizing to int8 ({mode}) and saving"):
        record = save_int8(loaded, out, mode, overwrite=overwrite)
    out_console.print(
        f"saved to {record.path} with int8 weights ({record.mode}; "
        f"{record.weights_bytes / 2**20:.1f} MiB of weights); outputs within "
        f"{record.max_abs_difference:.1e} of the float model's ({100 * record.relative_error:.2f}%"
        " of their norm) on random inputs; load it with pela.load, run it with pela eval or bench")
