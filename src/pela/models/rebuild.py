"""Rebuilding a recorded architecture (fresh weights), and what a model records of its source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pela.errors import PelaError
from pela.metadata import info
from pela.models.hf_source import untrusted_code_error
from pela.models.timm_source import load_timm, timm_source


def source_of(model: nn.Module) -> dict[str, Any] | None:
    """How to rebuild ``model``'s architecture: recorded by `pela.load`, else inferred, else
    None."""
    recorded = info(model).source
    if recorded:
        return recorded
    try:
        import transformers

        if isinstance(model, transformers.PreTrainedModel):
            return {"kind": "hf", "class": type(model).__name__}
    except ImportError:
        pass
    return timm_source(model)


def build_architecture(
    source: dict[str, Any], directory: Path, trust_remote_code: bool = False
) -> nn.Module:
    """A freshly initialized dense model of the recorded source (weights are loaded afterwards)."""
    kind = source.get("kind")
    if kind == "timm":
        name, kwargs = source.get("name"), source.get("kwargs") or {}
        if not isinstance(name, str) or not isinstance(kwargs, dict):
            raise PelaError(f"{directory}/pela.json records a malformed timm source")
        pretrained_cfg = source.get("pretrained_cfg")
        if pretrained_cfg is not None and not isinstance(pretrained_cfg, dict):
            raise PelaError(f"{directory}/pela.json records a malformed timm source")
        model = load_timm(name, None, True, kwargs, pretrained_cfg=pretrained_cfg)
        info(model).source = None  # the caller sets what was recorded
        return model
    if kind == "hf" and source.get("remote_code"):
        import transformers

        if not trust_remote_code:
            raise untrusted_code_error(directory)
        auto = getattr(transformers, str(source.get("auto_class", "")), None)
        if not (isinstance(auto, type) and str(source.get("auto_class")).startswith("AutoModel")):
            raise PelaError(f"{directory}/pela.json records a malformed Hugging Face source")
        config = transformers.AutoConfig.from_pretrained(str(directory), trust_remote_code=True)
        model = auto.from_config(config, trust_remote_code=True, dtype=torch.float32)
        if type(model).__name__ != source.get("class"):
            raise PelaError(
                f"{directory} builds a {type(model).__name__}, not the {source.get('class')} it "
                "records"
            )
        return model
    if kind == "hf":
        import transformers

        config = transformers.AutoConfig.from_pretrained(str(directory), trust_remote_code=False)
        cls = getattr(transformers, source.get("class", ""), None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise PelaError(
                f"unknown transformers model class {source.get('class')!r} in {directory}"
            )
        # `load` gives it the saved weights' dtype
        return cls._from_config(config, dtype=torch.float32)
    raise PelaError(f"unknown model source kind {kind!r} in {directory}")
