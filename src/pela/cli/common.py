"""What every command shares: the app, consoles, help texts, and small helpers."""

from __future__ import annotations

import contextlib
import functools
import inspect
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import typer
from rich.console import Console

from pela.arch import is_causal_lm
from pela.cli.config_file import (
    CONFIG_HELP,
    Setting,
    check_names,
    coerce,
    read_config,
    settings_help,
)
from pela.data.collate import Collator
from pela.data.load import load_dataset
from pela.errors import PelaError
from pela.evaluation.generation import write_generations
from pela.metadata import info
from pela.models.saving import WEIGHTS_NAME
from pela.models.weights import stored_float_dtype
from pela.utils.files import check_not_input, check_output_dir
from pela.version import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Smaller, faster Transformers by low-rank approximation and distillation (PELA).",
)


out_console = Console()
err_console = Console(stderr=True)


class Stopped(BaseException):
    """Ctrl-C, carried past typer (which turns a KeyboardInterrupt into a bare exit code) to
    `main`."""

    def __init__(self, interruption: KeyboardInterrupt):
        super().__init__(str(interruption))
        self.interruption = interruption


def command(*args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
    """``app.command``, for every pela command: what Ctrl-C stopped reaches `main` to be said, and
    a command with settings (`pela.cli.config_file.setting`) takes ``--config`` for them."""

    def decorator(fn: Callable) -> Callable:
        name = kwargs.get("name") or fn.__name__.replace("_", "-")
        signature = inspect.signature(fn, eval_str=True)
        params = dict(signature.parameters)
        settings = {k: p.default for k, p in params.items() if isinstance(p.default, Setting)}
        flags = [p for p in params.values() if not isinstance(p.default, Setting)]
        if settings:
            flags += [CONFIG_PARAMETER, CONTEXT_PARAMETER]
            kwargs.setdefault("epilog", settings_help(settings, name))

        @functools.wraps(fn)
        def run(**given: Any) -> Any:
            if settings:
                context, sources = given.pop("context"), given.pop("config") or []
                given = _configured(name, given, settings, params, sources, context)
            try:
                return fn(**given)
            except KeyboardInterrupt as e:
                raise Stopped(e) from None

        run.__signature__ = signature.replace(parameters=flags)
        app.command(*args, **kwargs)(run)
        return fn

    return decorator


CONFIG_PARAMETER = inspect.Parameter(
    "config", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[List[str]],
    default=typer.Option(None, "--config", help=CONFIG_HELP, metavar="FILE|KEY=VALUE"),
)
# typer passes the command's context: which flags the command line gave
CONTEXT_PARAMETER = inspect.Parameter(
    "context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context, default=None
)


def _configured(command: str, given: dict[str, Any], settings: dict[str, Setting],
                params: dict[str, inspect.Parameter], sources: list[str],
                context: typer.Context) -> dict[str, Any]:
    """The command's arguments: flags given on the command line, then ``--config``, then the
    defaults."""
    values = read_config(sources, command)
    check_names(values, list(params), command)
    arguments = {k: s.default for k, s in settings.items()} | given
    for key, value in values.items():
        if key in given and context.get_parameter_source(key).name != "DEFAULT":
            continue  # the flag on the command line wins
        arguments[key] = coerce(key, value, params[key].annotation)
    return arguments


@contextlib.contextmanager
def optional_step(what: str) -> Iterator[None]:
    """Run a step the main job does not need (a plot, a sample, an evaluation after the model is
    saved): if it fails, say so in one ``warning:`` line and go on; the command still succeeds."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - whatever broke, the saved model is what matters
        said = (
            str(e).strip()
            if isinstance(e, PelaError)
            else f"{type(e).__name__}: {str(e).strip()}".rstrip(": ")
        )
        text = " ".join(said.splitlines()[0].split())
        err_console.print(
            f"warning: skipped {what}: {text}", markup=False, highlight=False, soft_wrap=True
        )


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        def installed(name: str) -> str:
            try:
                return version(name)
            except PackageNotFoundError:
                return "not installed"

        deps = ", ".join(
            f"{name} {installed(name)}"
            for name in ("torch", "transformers", "timm", "accelerate", "peft")
        )
        print(f"pela {__version__} ({deps})")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="print the versions of pela and its main dependencies, and exit",
    ),
) -> None:
    pass


TEXT_FIELD_HELP = (
    "column (CSV/TSV, Parquet) or key (JSON/JSONL) holding the text; two, comma-separated, for "
    "sentence pairs (e.g. sentence1,sentence2); a CSV/TSV without a header row names its columns "
    "0, 1, ... (default: text, or the records' only column of text)"
)


LABEL_FIELD_HELP = (
    "column (CSV/TSV, Parquet) or key (JSON/JSONL) holding the class (default: label (or labels, "
    "gold_label, class, category, sentiment), or a Hugging Face dataset's only ClassLabel column, "
    "or a headerless CSV/TSV's only column of whole numbers)"
)


ALLOW_PICKLE_HELP = "also read legacy .pt/.pth/.bin weights, with torch.load(weights_only=True)"
CHECKPOINT_HELP = (
    "safetensors weights for a timm: architecture (a fine-tuned checkpoint brings its own number "
    "of classes)"
)
TEACHER_CHECKPOINT_HELP = "the teacher's weights, for a timm: teacher (as compress --checkpoint)"
TRUST_HELP = (
    "run the model code a Hugging Face model brings along (*.py named in its config's auto_map); "
    "read it first"
)
SAVE_DTYPE_HELP = (
    "write the weights in float32, bfloat16 or float16 (half the file, to ship; pela loads "
    "half-precision weights back in float32 to train); default: as they are"
)


WORKERS_HELP = (
    "DataLoader processes that tokenize or decode batches while the model runs (0 = in the main "
    "process); helps most on a GPU"
)


def _load_data(path: Path, *, text_field: Optional[str], **kwargs: Any) -> Any:
    """`pela.load_dataset`, saying which columns hold the text and the class where pela chose
    others than text and label."""

    ds = load_dataset(path, text_field=text_field, **kwargs)
    fields, name = getattr(ds, "text_fields", ()), Path(path).name
    if text_field is None and fields and fields != ("text",):
        _chose(name, "text", fields[0], "text_field")
    if (
        kwargs.get("label_field") is None
        and getattr(ds, "classes", None)
        and getattr(ds, "label_field", "label") != "label"
    ):
        _chose(name, "class", ds.label_field, "label_field")
    return ds


def _chose(file: str, what: str, column: str, setting: str) -> None:
    """Say which column pela took for the text or the class, and how to name another."""
    err_console.print(f"{file}: the {what} is its {column!r} column ({setting}=NAME names another)")


def _check_counts(values: dict[str, Optional[int]]) -> None:
    """Each of ``values`` (named as the user sets it) that was given must be at least 1."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise PelaError(f"{name} must be >= 1, got {value}")


def _check_pack(pack: Optional[int]) -> None:
    if pack is not None and pack < 2:
        raise PelaError(f"--pack must be at least 2 tokens, got {pack}")


def _collator(model: Any, max_length: Optional[int], data: dict[str, Any]) -> Collator:
    """The model's collator, once it has checked that it can read each of ``data`` (``None``:
    not given), named as the user named it."""
    collate = Collator(model, max_length=max_length)
    for name, ds in data.items():
        if ds is not None:
            collate.check(ds, name)
    return collate


def _generations(run: Path, student: Any, teacher: Any, prompts: Any, collate: Collator) -> None:
    """A language model's greedy continuations beside the teacher's, once the student is safe."""
    if is_causal_lm(student):
        with optional_step("generations.md"):
            write_generations(run / "generations.md", student, teacher, prompts, collate.tokenizer)


def _opt_str(path: Optional[Path]) -> Optional[str]:
    return None if path is None else str(path)


def _shapes_text(shapes: dict[str, list[int]]) -> str:
    """``{"input_ids": [32, 128]}`` → ``input_ids 32×128``."""
    return ", ".join(f"{name} {'×'.join(map(str, shape))}" for name, shape in shapes.items())


def _check_eval_flags(
    eval_data: Path | None, eval_every: int | None, keep_best: str | None
) -> None:
    """Evaluations during training (distill, finetune) need data to evaluate on."""
    if (eval_every or keep_best) and eval_data is None:
        raise PelaError(f"{'eval_every' if eval_every else '--keep-best'} needs --eval-data")


def _check_output(out: Path, resume: bool, overwrite: bool, inputs: dict[str, Any]) -> None:
    """Before anything slow: ``--out`` is none of the inputs, and (unless resuming) may be
    written."""
    check_not_input(out, inputs)
    if not resume:
        check_output_dir(out, overwrite)


def _half_precision_note(model: Any, save_dtype: str | None) -> None:
    """Say how to keep the size of weights that came in half precision and were saved in float32."""
    dtype = info(model).weights_dtype
    if dtype and save_dtype is None:
        err_console.print(
            f"note: the weights came in {dtype} and were saved in float32, twice the bytes; "
            f"--config save_dtype={dtype} keeps their size"
        )


def _saved(out: Path) -> str:
    """``out`` with the size and dtype of the weights written there, for the closing line."""

    weights = Path(out) / WEIGHTS_NAME
    dtype = stored_float_dtype(weights)
    in_dtype = f" in {str(dtype).removeprefix('torch.')}" if dtype else ""
    return f"{out} ({weights.stat().st_size / 1e6:,.1f} MB{in_dtype})"
