"""Turning a model name into a model: ``timm:NAME``, ``hf:ID``, or a local directory.

Every model loaded here remembers where it came from, which is what `pela.save_pretrained`
records so `pela.load` can rebuild the architecture without pickles.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from pela.errors import PelaError
from pela.models.adapters import load_adapter
from pela.models.gguf_source import gguf_to_hf
from pela.models.hf_source import (
    HALF,
    hf_from_dir,
    hf_snapshot,
    note_half_precision,
    sentence_transformer_dir,
)
from pela.models.pela_dir import is_pela_export, load_export, load_saved
from pela.models.saving import is_pela_dir
from pela.models.timm_source import is_timm_dir, load_timm, timm_from_dir

SOURCE_HELP = (
    "use timm:NAME, hf:ORG/NAME, a local directory (saved by pela, by Hugging Face "
    "save_pretrained, by timm, or a peft LoRA adapter) or a .gguf file"
)


def load(
    source: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    checkpoint: str | None = None,
    random_init: bool = False,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Load a model the way users name it, in eval mode.

    Args:
        source: a directory written by `pela.save_pretrained` (rebuilt exactly as saved: its layers
            at their ranks, in the dtype it was saved in, outputs bitwise); ``timm:NAME``
            (pretrained weights from the hub unless ``checkpoint``/``random_init``; also
            ``timm:hf-hub:ORG/NAME``); ``hf:ORG/NAME`` (downloaded, or from the local cache when
            offline); or a local directory written by Hugging Face ``save_pretrained``, by timm
            (``save_for_hf``; a hub snapshot of a timm model), or by peft (a LoRA adapter: its base
            model is loaded and the adapter merged in); or a ``.gguf`` file (llama.cpp's format),
            dequantized once into a cached Hugging Face directory (`pela.models.gguf_source`).
        model: for a pela directory that does not record its architecture (a model that did not come
            from `pela.load`): the freshly built dense model to rebuild it into.
        checkpoint: a safetensors file with weights for a ``timm:`` architecture.
        random_init: build the architecture without pretrained weights (smoke tests, benchmarks).
        allow_pickle: also read legacy torch.save weights (``--checkpoint x.pt``, a Hugging Face
            directory with only ``pytorch_model.bin``), with ``torch.load(weights_only=True)``,
            which refuses anything but tensors. Off by default: pela never unpickles a file it did
            not write.
        trust_remote_code: run the model code a Hugging Face model brings along (``auto_map`` in its
            config, ``*.py`` beside it) for an architecture transformers lacks. Off by default: that
            code runs with your permissions, so read it first.
        **kwargs: passed to ``timm.create_model`` for timm models (e.g. ``num_classes``).

    Weights shared in half precision are loaded in float32, which SVD and training need; a pela
    directory keeps the dtype it was saved in (`load_for_training` gives float32 there too).

    >>> model = pela.load("timm:vit_base_patch16_224")  # doctest: +SKIP
    """
    if isinstance(source, os.PathLike):
        path = Path(source).expanduser()
        if not path.exists():
            raise PelaError(f"{source} does not exist (not a directory, nor a .gguf file)")
        if not path.is_dir() and not (path.is_file() and path.suffix == ".gguf"):
            raise PelaError(f"{source} is neither a directory nor a .gguf file")
        source = str(source)
    if model is not None or (
        isinstance(source, str) and source and is_pela_dir(Path(source).expanduser())
    ):
        if checkpoint or random_init:
            raise PelaError(
                f"{source} is a model saved by pela: a checkpoint and random_init do not apply to "
                "it"
            )
        return load_saved(Path(source).expanduser(), model, trust_remote_code=trust_remote_code)
    return load_for_training(
        source,
        checkpoint=checkpoint,
        random_init=random_init,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
        **kwargs,
    )


def load_for_training(
    source: str,
    *,
    checkpoint: str | None = None,
    random_init: bool = False,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """`load`, except that a pela directory saved in half precision comes back in float32, to train
    (what every ``pela`` command loads); ``info(model).weights_dtype`` remembers the half dtype, so
    that a command saving the model can say how to keep its size."""
    if not isinstance(source, str) or not source:
        raise PelaError(f"model source must be a non-empty string; {SOURCE_HELP}")
    if checkpoint and random_init:
        raise PelaError("give either a checkpoint or random_init, not both")
    if source.startswith("timm:"):
        return load_timm(source[5:], checkpoint, random_init, kwargs, allow_pickle)
    if checkpoint:
        raise PelaError(
            "a checkpoint file applies to timm: sources only (a directory or hf: model brings its "
            "own weights)"
        )
    if source.startswith("hf:"):
        path = hf_snapshot(source[3:], random_init, allow_pickle, trust_remote_code)
        # a timm repository on the hub (timm/NAME): timm builds it, not transformers' wrapper
        if is_timm_dir(path):
            return timm_from_dir(path, random_init, kwargs, allow_pickle)
        return hf_from_dir(path, random_init, allow_pickle, trust_remote_code)
    path = Path(source).expanduser()
    if path.is_dir():
        # pela's own export is read with pela's own code
        if is_pela_dir(path) or is_pela_export(path):
            model = (
                load_saved(path, trust_remote_code=trust_remote_code)
                if is_pela_dir(path)
                else load_export(path)
            )
            half = next((p.dtype for p in model.parameters() if p.dtype in HALF), None)
            note_half_precision(model, half)
            # saved in half precision to ship: as for hub weights, train in float32
            return model.float() if half else model
        if is_timm_dir(path):
            return timm_from_dir(path, random_init, kwargs, allow_pickle)
        if (path / "config.json").is_file():
            return hf_from_dir(path, random_init, allow_pickle, trust_remote_code)
        # a LoRA (peft) fine-tune: its base with the adapter merged in
        if (path / "adapter_config.json").is_file():
            return load_adapter(
                path,
                load_for_training,
                random_init=random_init,
                allow_pickle=allow_pickle,
                trust_remote_code=trust_remote_code,
            )
        inner = sentence_transformer_dir(path)
        # an older sentence-transformers layout: the Transformer in 0_Transformer/
        if inner is not None:
            return hf_from_dir(inner, random_init, allow_pickle, trust_remote_code)
        raise PelaError(
            f"{path} holds neither a pela model (pela.json), a Hugging Face or timm model "
            "(config.json) nor a LoRA adapter (adapter_config.json)"
        )
    # llama.cpp's format: dequantized once into a cached Hugging Face directory
    if path.is_file() and path.suffix == ".gguf":
        if random_init:
            raise PelaError(
                "random_init does not apply to a GGUF file: its architecture comes with its weights"
            )
        return hf_from_dir(gguf_to_hf(path), False, allow_pickle, trust_remote_code)
    if path.exists():
        raise PelaError(f"{source} is a file, not a model directory; {SOURCE_HELP}")
    hint = (
        f" (for the Hugging Face hub, write hf:{source})"
        if source.count("/") == 1 and not source.startswith((".", "/"))
        else ""
    )
    raise PelaError(f"unknown model source {source!r}{hint}; {SOURCE_HELP}")
