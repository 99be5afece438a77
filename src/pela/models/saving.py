"""Saving compressed models: safetensors for weights, JSON for everything else.

A saved directory holds ``model.safetensors``, ``pela.json`` (how to rebuild the architecture and
which layers are factorized at which rank) and, for Hugging Face models, ``config.json`` plus the
tokenizer/processor files of the source. Nothing is ever unpickled. Directories and files are
written to a temporary name beside the target and renamed into place, so a crash never leaves a
half-written model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from pela.arch.classifier import SequenceClassifier
from pela.errors import PelaError, warn
from pela.layers.int8 import int8_mode, int8_tensors
from pela.layers.lowrank import owned_state_dict, shared_input_groups
from pela.metadata import info
from pela.models.rebuild import build_architecture, source_of
from pela.models.structure import apply_structure, factorized_layers
from pela.utils.files import (
    atomic_dir,
    atomic_write_text,
    default_permissions,
    read_json,
    remove_stale_temporaries,
    temporary_prefix,
    writing,
)
from pela.utils.sharded import gather_weights

FORMAT_VERSION = 1
CONFIG_NAME = "pela.json"
WEIGHTS_NAME = "model.safetensors"
# files of a Hugging Face model directory that are not weights but belong with the model
COMPANION_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "preprocessor_config.json",
    "processor_config.json",
    "image_processor_config.json",
    "generation_config.json",
    "chat_template.jinja",
)



def copy_companion_files(files_from: str | os.PathLike | None, target: Path) -> None:
    """Copy the tokenizer, processor and generation files of the directory ``files_from`` (a
    model's `pela.metadata.info` ``files``) into ``target``; nothing when there is none."""
    if not files_from or not Path(files_from).is_dir():
        return
    for name in COMPANION_FILES:
        if (Path(files_from) / name).is_file():
            shutil.copy(Path(files_from) / name, target / name)

def _rebuilds(model: nn.Module, source: dict[str, Any]) -> bool:
    """Whether ``source`` rebuilds exactly ``model``'s parameter and buffer shapes.

    Built on the meta device (no memory, no init); on the CPU for an architecture whose constructor
    needs real numbers (``.item()`` on a tensor, say).
    """

    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                fresh = build_architecture(source, Path("."))
                apply_structure(fresh, factorized_layers(model))
        except Exception:  # noqa: BLE001 - any failure to rebuild means "does not rebuild"
            continue
        shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
        return shapes(fresh) == shapes(model)
    return False


# ---------------------------------------------------------------- weights' dtype on disk
SAVE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def save_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``dtype`` (a name or a torch dtype) checked as a dtype to write weights in; None keeps the
    model's."""
    if dtype is None:
        return None
    found = (
        SAVE_DTYPES.get(dtype)
        if isinstance(dtype, str)
        else dtype
        if dtype in SAVE_DTYPES.values()
        else None
    )
    if found is None:
        raise PelaError(f"weights can be saved in {', '.join(SAVE_DTYPES)}, not {dtype!r}")
    return found


@contextlib.contextmanager
def _floats_as(model: nn.Module, dtype: torch.dtype | None) -> Iterator[None]:
    """Hold the model's floating-point tensors in ``dtype`` while it is written, then give back the
    originals.

    Swapping ``.data`` keeps each tensor (and weights tied between layers) the same object, and the
    originals are restored untouched: a float32 model saved in bfloat16 goes on training in float32.
    """
    swapped = []
    try:
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()] if dtype is not None else []:
                if t.is_floating_point() and t.dtype != dtype:
                    swapped.append((t, t.data))
                    t.data = t.data.to(dtype)
        yield
    finally:
        for t, data in swapped:
            t.data = data


# ---------------------------------------------------------------- public API
class _Weights:
    """Gathered weights where `safetensors.torch.save_model` expects a module (it reads only
    ``state_dict()``)."""

    def __init__(self, weights: dict[str, torch.Tensor], dtype: torch.dtype | None):
        cast = {}  # tied weights stay one tensor after the cast
        self.weights = {
            k: cast.setdefault(
                id(v), v.to(dtype) if dtype is not None and v.is_floating_point() else v
            )
            for k, v in weights.items()
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.weights)


def write_weights(
    model: nn.Module,
    file: Path,
    dtype: torch.dtype | None = None,
    weights: dict[str, torch.Tensor] | None = None,
) -> None:
    """``model``'s weights (or ``weights``, gathered from shards) as one safetensors file: tied
    weights once, floats in ``dtype`` if given, the stacked ``A`` factors of a packed model
    (`pela.pack`) as tensors of their own."""
    from safetensors.torch import save_file, save_model

    if int8_mode(model) is not None:
        if dtype is not None or weights is not None:
            raise PelaError("a model with int8 weights is saved as it is: without a dtype, and "
                            "not sharded")
        tensors, metadata = int8_tensors(model)
        save_file(tensors, str(file), metadata=metadata)
        return
    if weights is None and shared_input_groups(model):
        weights = owned_state_dict(model)
    if weights is not None:
        save_model(_Weights(weights, dtype), str(file))
    else:
        with _floats_as(model, dtype):
            save_model(model, str(file))


def _write_model(
    model: nn.Module,
    target: Path,
    extra: dict[str, Any] | None,
    dtype: torch.dtype | None = None,
    weights: dict[str, torch.Tensor] | None = None,
) -> None:

    backbone = model.backbone if isinstance(model, SequenceClassifier) else model
    source = source_of(backbone)
    if source and source.get("kind") == "timm" and not _rebuilds(backbone, source):
        warn(
            f"timm:{source.get('name')} as recorded does not rebuild this model's shapes (it was "
            "built with arguments pela did not see); the weights are saved, and pela.load needs "
            "the dense model: pela.load(dir, model=...). Models made by pela.load('timm:NAME', "
            "**kwargs) record their arguments."
        )
        source = None
    head = (
        {
            "hidden": model.hidden,
            "num_classes": model.num_classes,
            "pooling": model.pooling,
            "hidden_states": model.hidden_states,
            "tower": model.tower,
        }
        if isinstance(model, SequenceClassifier)
        else None
    )
    meta = {
        "format": "pela",
        "version": FORMAT_VERSION,
        "source": source,
        "head": head,
        "classes": info(model).classes,
        "factorized": factorized_layers(model),
        **(extra or {}),
    }
    shared = shared_input_groups(model)
    if shared:
        meta["shared_inputs"] = shared
    if int8_mode(model) is not None:
        meta["int8"] = int8_mode(model)  # pela.load quantizes the rebuilt model the same way
    write_weights(model, target / WEIGHTS_NAME, dtype, weights)
    if source and source.get("kind") == "hf":
        backbone.config.to_json_file(str(target / "config.json"))
        files_from = info(backbone).files
        copy_companion_files(files_from, target)
        # the architecture's own code, for pela.load to build it
        if source.get("remote_code") and files_from:
            for code in Path(files_from).glob("*.py"):
                shutil.copy(code, target / code.name)
    (target / CONFIG_NAME).write_text(json.dumps(meta, indent=2))


def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    dtype: str | torch.dtype | None = None,
) -> Path:
    """Write ``model`` to ``directory`` (atomically): safetensors weights plus JSON metadata.

    The architecture is rebuilt on `load` from the source recorded by `pela.load` (a timm
    name or a Hugging Face config); for any other model pass the fresh architecture to `load`.
    ``dtype`` (``"bfloat16"``, ``"float16"``, ``"float32"``) writes the floating-point weights in
    that dtype, halving the file for shipping, and leaves ``model`` as it was; None writes them as
    they are.

    >>> import torch.nn as nn, pela, tempfile
    >>> d = pela.save_pretrained(nn.Linear(4, 4), tempfile.mkdtemp() + "/m")

    A model sharded by FSDP is gathered whole: every process calls this, the main one writes.
    """
    dt = save_dtype(dtype)
    weights = gather_weights(model)
    if weights is not None and torch.distributed.get_rank() != 0:
        return Path(directory)
    with atomic_dir(directory, overwrite) as tmp:
        _write_model(model, tmp, extra, dt, weights)
    return Path(directory)


def save_into(
    model: nn.Module,
    directory: str | os.PathLike,
    extra: dict[str, Any] | None = None,
    dtype: str | torch.dtype | None = None,
    weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the model files into an existing run directory (beside its logs), each file atomically.

    ``pela.json`` is moved in last: until it is there, the directory is not a loadable model.
    ``weights``: a sharded model's, gathered on this (the main) process by `gather_weights`.
    """
    path, dt = Path(directory), save_dtype(dtype)
    with writing(path):
        remove_stale_temporaries(path, "model")  # what a run killed while saving here left
        tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix("model"), dir=path))
        try:
            _write_model(model, tmp, extra, dt, weights)
            default_permissions(tmp)
            (path / CONFIG_NAME).unlink(missing_ok=True)
            for f in sorted(tmp.iterdir(), key=lambda f: f.name == CONFIG_NAME):
                os.replace(f, path / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def record_metadata(directory: str | os.PathLike, extra: dict[str, Any]) -> None:
    """Add (or replace) top-level entries of a saved model's ``pela.json``, atomically: what was
    learnt of the model after it was saved (a final evaluation)."""
    path = Path(directory) / CONFIG_NAME
    atomic_write_text(path, json.dumps({**read_json(path), **extra}, indent=2))


def is_pela_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_NAME).is_file()
