"""Ship a compressed Hugging Face model to people who use transformers and not pela.

`export_hf` turns a pela directory into a Hugging Face directory that
``AutoModel.from_pretrained(out, trust_remote_code=True)`` (or the ``AutoModelFor...`` class of its
task) loads with transformers alone: the config gains an ``auto_map`` naming ``modeling_pela.py``
(`pela.hf_modeling`, copied as it is) and a ``pela`` entry with the factorized layers and their
ranks; the weights are the same safetensors file, renamed ``pela_model.safetensors`` so that loading
without the code fails loudly instead of leaving the factorized layers random.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import PelaError
from .io import COMPANION_FILES, CONFIG_NAME, WEIGHTS_NAME, atomic_dir, is_pela_dir, read_json

CODE_NAME = "modeling_pela.py"
LOADER = "modeling_pela.PelaLowRankModel"


def export_hf(directory: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the pela model in ``directory`` (from `pela.save_pretrained` or the CLI) to ``out`` as a
    Hugging Face directory that transformers loads with ``trust_remote_code=True``; returns ``out``.

    Only models of a transformers architecture can be exported (not timm models, not architectures
    that bring their own code, not a head `pela.finetune` added: those load with `pela.load`).
    """
    src = Path(directory)
    if not is_pela_dir(src):
        raise PelaError(f"{src} is not a directory written by pela (no {CONFIG_NAME})")
    meta = read_json(src / CONFIG_NAME)
    source = meta.get("source") or {}
    if source.get("kind") != "hf":
        kind = "timm" if source.get("kind") == "timm" else "no recorded architecture"
        raise PelaError(f"{src} is a {kind} model; export writes Hugging Face directories, for transformers models only "
                        "(pela.load reads this one)")
    if source.get("remote_code"):
        raise PelaError(f"{src} is an architecture that brings its own code; export cannot add pela's beside it (pela.load reads it)")
    if meta.get("head"):
        raise PelaError(f"{src} has a classification head added by pela finetune, which transformers does not know "
                        "(pela.load reads it); export the model before fine-tuning, or fine-tune a Hugging Face model with a head of its own")
    config = read_json(src / "config.json")
    auto_map = _auto_classes(config, str(source.get("class")))
    config["auto_map"] = auto_map
    config["pela"] = {"architecture": source["class"], "factorized": meta["factorized"]}
    with atomic_dir(out, overwrite) as tmp:
        for name in COMPANION_FILES:
            if (src / name).is_file():
                shutil.copy(src / name, tmp / name)
        shutil.copy(src / WEIGHTS_NAME, tmp / "pela_model.safetensors")
        shutil.copy(Path(__file__).with_name("hf_modeling.py"), tmp / CODE_NAME)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return Path(out)


def _auto_classes(config: dict[str, Any], architecture: str) -> dict[str, str]:
    """Every transformers auto class that builds ``architecture`` for this model type (in name order),
    then ``AutoModel``, each mapped to the loader (which builds ``architecture`` whichever class calls it)."""
    import transformers

    if not isinstance(getattr(transformers, architecture, None), type):
        raise PelaError(f"transformers has no model class {architecture!r}")
    found = {}
    for name in dir(transformers):
        if not name.startswith("AutoModel"):
            continue
        names = getattr(getattr(getattr(transformers, name, None), "_model_mapping", None), "_model_mapping", None)
        built = names.get(config.get("model_type")) if isinstance(names, dict) else None
        if built == architecture or (isinstance(built, (list, tuple)) and architecture in built):
            found[name] = LOADER
    return {**found, "AutoModel": LOADER}  # the first is the class to suggest: the architecture's own, where it has one
