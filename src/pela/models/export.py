"""Ship a compressed Hugging Face model to people who use transformers and not pela.

`export_hf` turns a pela directory into a Hugging Face directory that
``AutoModel.from_pretrained(out, trust_remote_code=True)`` (or the ``AutoModelFor...`` class of its
task) loads with transformers alone: the config gains an ``auto_map`` naming ``modeling_pela.py``
(`pela.layers.hf_modeling`, copied as it is) and a ``pela`` entry with the factorized layers and
their ranks; the weights are the same safetensors file, renamed ``pela_model.safetensors`` so that
loading without the code fails loudly instead of leaving the factorized layers random.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pela.errors import PelaError
from pela.layers import hf_modeling
from pela.models.saving import CONFIG_NAME, WEIGHTS_NAME, copy_companion_files, is_pela_dir
from pela.models.weights import check_safetensors
from pela.utils.files import atomic_dir, check_not_input, read_json

CODE_NAME = "modeling_pela.py"
LOADER = "modeling_pela.PelaLowRankModel"


def export_hf(
    directory: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write the pela model in ``directory`` (from `pela.save_pretrained` or the CLI) to ``out`` as
    a Hugging Face directory that transformers loads with ``trust_remote_code=True``; returns
    ``out``.

    Only models of a transformers architecture can be exported (not timm models, nor architectures
    that bring their own code: those load with `pela.load`). A head `pela.finetune` added on the
    last hidden states is rebuilt too (``PelaClassifier``); one on a single tower, on another head's
    hidden states or on an encoder-decoder is not.
    """
    src = Path(directory)
    check_not_input(out, {"model": src})
    if not is_pela_dir(src):
        raise PelaError(f"{src} is not a directory written by pela (no {CONFIG_NAME})")
    meta = read_json(src / CONFIG_NAME)
    source = meta.get("source") or {}
    if source.get("kind") != "hf":
        kind = "timm" if source.get("kind") == "timm" else "no recorded architecture"
        raise PelaError(
            f"{src} is a {kind} model; export writes Hugging Face directories, for transformers "
            "models only (pela.load reads this one)"
        )
    if source.get("remote_code"):
        raise PelaError(
            f"{src} is an architecture that brings its own code; export cannot add pela's beside "
            "it (pela.load reads it)"
        )
    # an export that transformers then fails to load is no export
    check_safetensors(src / WEIGHTS_NAME)
    config = read_json(src / "config.json")
    head = meta.get("head")
    if head and (
        head.get("tower") or head.get("hidden_states") or config.get("is_encoder_decoder")
    ):
        raise PelaError(
            f"{src} has a classification head added by pela finetune on "
            + (
                "one tower of the model"
                if head.get("tower")
                else "a model with a head of another kind"
                if head.get("hidden_states")
                else "an encoder-decoder model"
            )
            + ", which export does not rebuild (pela.load reads it)"
        )
    auto_map = _auto_classes(config, str(source.get("class")))
    config["pela"] = {"architecture": source["class"], "factorized": meta["factorized"]}
    if meta.get("shared_inputs"):
        config["pela"]["shared_inputs"] = meta["shared_inputs"]
    if head:  # a classifier around the architecture: the auto class of its task builds it
        task = (
            "AutoModelForSequenceClassification"
            if "vocab_size" in config
            else "AutoModelForImageClassification"
        )
        auto_map = {task: LOADER, **auto_map}
        config["pela"]["head"] = {k: head[k] for k in ("hidden", "num_classes", "pooling")}
        classes = meta.get("classes") or [str(i) for i in range(head["num_classes"])]
        config["id2label"] = {str(i): str(c) for i, c in enumerate(classes)}
        config["label2id"] = {str(c): i for i, c in enumerate(classes)}
    config["auto_map"] = auto_map
    with atomic_dir(out, overwrite) as tmp:
        copy_companion_files(src, tmp)
        shutil.copy(src / WEIGHTS_NAME, tmp / "pela_model.safetensors")
        shutil.copy(Path(hf_modeling.__file__), tmp / CODE_NAME)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return Path(out)


def _auto_classes(config: dict[str, Any], architecture: str) -> dict[str, str]:
    """Every transformers auto class that builds ``architecture`` for this model type (in name
    order), then ``AutoModel``, each mapped to the loader (which builds ``architecture`` whichever
    class calls it)."""
    import transformers

    if not isinstance(getattr(transformers, architecture, None), type):
        raise PelaError(f"transformers has no model class {architecture!r}")
    found = {}
    for name in dir(transformers):
        if not name.startswith("AutoModel"):
            continue
        names = getattr(
            getattr(getattr(transformers, name, None), "_model_mapping", None),
            "_model_mapping",
            None,
        )
        built = names.get(config.get("model_type")) if isinstance(names, dict) else None
        if built == architecture or (isinstance(built, (list, tuple)) and architecture in built):
            found[name] = LOADER
    # the first is the class to suggest: the architecture's own, where it has one
    return {**found, "AutoModel": LOADER}
