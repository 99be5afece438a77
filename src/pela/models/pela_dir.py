"""`load_saved`: a model saved by `save_pretrained`, rebuilt exactly (its dtype kept, outputs
bitwise); `load_export`: the same for a directory `pela export` wrote, read with pela's own code."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from pela.arch.classifier import SequenceClassifier
from pela.errors import PelaError
from pela.layers.hf_modeling import WEIGHTS as EXPORT_WEIGHTS
from pela.layers.hf_modeling import share_inputs
from pela.layers.int8 import load_int8
from pela.layers.lowrank import LowRankLinear
from pela.metadata import info
from pela.models.rebuild import build_architecture
from pela.models.saving import CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME
from pela.models.structure import apply_structure
from pela.models.weights import check_safetensors, load_weights, stored_float_dtype
from pela.utils.files import read_json


def load_saved(
    directory: str | os.PathLike, model: nn.Module | None = None, *, trust_remote_code: bool = False
) -> nn.Module:
    """Rebuild a model saved by `save_pretrained` (in eval mode); outputs are bitwise those saved.

    Args:
        directory: a directory written by `save_pretrained`.
        model: the freshly built dense architecture, needed only when the saved model's source
            was not recorded (a model that did not come from `pela.load`).
        trust_remote_code: needed for a model whose architecture is code it brought along (see
            `pela.load`); that code was copied beside the weights and runs again here.
    """

    path = Path(directory)
    if not path.is_dir():
        raise PelaError(f"{path} is not a directory")
    meta = read_json(path / CONFIG_NAME)
    if meta.get("format") != "pela" or not isinstance(meta.get("factorized"), dict):
        raise PelaError(f"{path / CONFIG_NAME} is not a pela model description")
    if meta.get("version", 0) > FORMAT_VERSION:
        raise PelaError(
            f"{path} was written by a newer pela (format {meta['version']}); upgrade pela"
        )
    return _rebuilt(path, meta, path / WEIGHTS_NAME, model, trust_remote_code)


def is_pela_export(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` was written by `pela export` (a Hugging Face directory with pela's
    factors)."""
    path = Path(directory)
    if not (path / EXPORT_WEIGHTS).is_file() or not (path / "config.json").is_file():
        return False
    try:
        spec = read_json(path / "config.json").get("pela")
    except PelaError:
        return False
    return (
        isinstance(spec, dict)
        and isinstance(spec.get("factorized"), dict)
        and isinstance(spec.get("architecture"), str)
    )


def load_export(directory: str | os.PathLike) -> nn.Module:
    """A directory `pela export` wrote, rebuilt with pela's own classes (its ``modeling_pela.py`` is
    not run)."""
    path = Path(directory)
    config = read_json(path / "config.json")
    spec = config["pela"]
    meta = {
        "source": {"kind": "hf", "class": spec["architecture"]},
        "factorized": spec["factorized"],
        "head": None,
    }
    if isinstance(spec.get("head"), dict):
        meta["head"] = {k: spec["head"][k] for k in ("hidden", "num_classes", "pooling")}
        labels = config.get("id2label") or {}
        meta["classes"] = [labels[str(i)] for i in range(len(labels))] if labels else None
    return _rebuilt(path, meta, path / EXPORT_WEIGHTS, None, False)


def _rebuilt(
    path: Path, meta: dict, weights: Path, model: nn.Module | None, trust_remote_code: bool
) -> nn.Module:
    """The model ``meta`` (a ``pela.json``) describes, with the weights of ``weights``."""
    if model is None:
        if not meta.get("source"):
            raise PelaError(
                f"{path} does not record its architecture; pass the dense model: pela.load(dir, "
                "model=...)"
            )
        model = build_architecture(meta["source"], path, trust_remote_code)
        info(model).source = meta["source"]
        if meta.get("head"):
            model = SequenceClassifier(model, **meta["head"])
    apply_structure(model, meta["factorized"])
    stored = stored_float_dtype(weights)
    if stored is not None:  # a model saved in bfloat16 comes back in bfloat16, bit for bit
        model.to(stored)
    if meta.get("int8") is not None:  # quantized as it was saved, then given its int8 weights
        state = load_int8(model, check_safetensors(weights), meta["int8"])
        load_weights(model, weights, state=state, assign=True)
    else:
        load_weights(model, weights)
    _share_inputs(model, meta.get("shared_inputs") or [], path)
    if meta.get("source"):
        info(getattr(model, "backbone", model)).source = meta["source"]
    if meta.get("classes"):
        info(model).classes = list(meta["classes"])
    if (path / "config.json").is_file():
        info(model).files = str(path)
        info(getattr(model, "backbone", model)).files = str(path)
    return model.eval()


def _share_inputs(model: nn.Module, groups: list, path: Path) -> None:
    """Stack again the ``A`` factors `pela.pack` stacked before the model was saved."""
    layers = {n for n, m in model.named_modules() if isinstance(m, LowRankLinear)}
    for group in groups:
        if not isinstance(group, list) or not set(group) <= layers or len(group) < 2:
            raise PelaError(f"{path / CONFIG_NAME}: shared_inputs names {group!r}, not a group of "
                            "factorized layers of this model")
    share_inputs(model, groups)
