"""timm models: by name, from a timm directory or hub snapshot, or with a checkpoint file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pela.errors import PelaError
from pela.metadata import info
from pela.models.hf_source import hf_snapshot, weight_files
from pela.models.hub import offline_unless_reachable
from pela.models.weights import (
    load_weights,
    read_weights,
    without_wrapper_prefix,
)

# what the rebuilt model does not need to know of where its weights came from
_CFG_LOCATION_KEYS = ("file", "source", "url", "hf_hub_id", "hf_hub_filename", "state_dict")


def _jsonable(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists), or None if JSON cannot hold
    it."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def timm_source(model: nn.Module, kwargs: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """How to rebuild a timm model: architecture, constructor arguments and its preprocessing
    config.

    The arguments are timm's own record of how the model was built (``get_model_args``, which
    follows
    ``reset_classifier``), else ``kwargs``; the pretrained config keeps the normalization and crop
    of the weights it came with, which the registry's default for the architecture may not share.
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    if not cfg.get("architecture"):
        return None
    args = None
    try:
        from timm.models import get_model_args

        args = (
            _jsonable(get_model_args(model))
            if getattr(model, "_model_args", None) is not None
            else None
        )
    except Exception:  # noqa: BLE001 - an older timm, or arguments it cannot report: fall back
        args = None
    if args is None:
        args = _jsonable(kwargs or {"num_classes": getattr(model, "num_classes", 1000)})
    if args is None:
        return None
    pretrained_cfg = _jsonable({k: v for k, v in cfg.items() if k not in _CFG_LOCATION_KEYS})
    return {
        "kind": "timm",
        "name": cfg["architecture"],
        "kwargs": args,
        "pretrained_cfg": pretrained_cfg,
    }


def _known_cfg_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """The fields of a recorded pretrained config that this timm knows (another version may have
    more)."""
    import dataclasses

    from timm.models import PretrainedCfg

    known = {f.name for f in dataclasses.fields(PretrainedCfg)}
    return {k: v for k, v in cfg.items() if k in known}


def is_timm_dir(path: Path) -> bool:
    """A directory in timm's hub format: config.json names an ``architecture`` (Hugging Face's name
    a ``model_type``)."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(cfg, dict)
        and isinstance(cfg.get("architecture"), str)
        and "model_type" not in cfg
    )


def timm_from_dir(
    path: Path, random_init: bool, kwargs: dict[str, Any], allow_pickle: bool = False
) -> nn.Module:
    """A timm model saved the way timm shares it (``save_for_hf``, a hub snapshot): config.json +
    weights."""
    import timm

    try:
        model = timm.create_model(f"local-dir:{path}", pretrained=False, **kwargs)
    except Exception as e:  # noqa: BLE001 - timm raises many kinds for a config it cannot build
        raise PelaError(
            f"{path}/config.json is not a usable timm config: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e
    if not random_init:
        safe, pickles = weight_files(path, allow_pickle)
        load_weights(
            model,
            (sorted(safe, key=lambda p: p.name != "model.safetensors") or pickles)[0],
            allow_pickle=allow_pickle,
        )
    info(model).source = timm_source(model, kwargs)
    return model.eval()


def _checkpoint_classes(model: nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """How many classes the classifier in ``state`` has (0: the checkpoint has none), by timm's name
    for the model's classifier; None when the model names none or the checkpoint's is of another
    layout."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    names = [names] if isinstance(names, str) else [n for n in names or () if isinstance(n, str)]
    if not names or not hasattr(model, "reset_classifier"):
        return None
    weight = state.get(f"{names[0]}.weight")
    if weight is not None:
        return int(weight.shape[0]) if weight.ndim == 2 else None
    return None if any(key.startswith(f"{name}.") for key in state for name in names) else 0


def _load_timm_checkpoint(
    model: nn.Module, checkpoint: str, kwargs: dict[str, Any], allow_pickle: bool
) -> dict[str, Any]:
    """Load ``checkpoint`` into a timm model built without weights, and return its constructor
    arguments.

    A checkpoint fine-tuned to another number of classes, or saved without a classifier
    (``num_classes=0``), gets a head of its size (``reset_classifier``), as ``num_classes`` would
    give, unless the caller chose ``num_classes``.
    """
    state = without_wrapper_prefix(read_weights(checkpoint, allow_pickle), model.state_dict())
    classes = None if "num_classes" in kwargs else _checkpoint_classes(model, state)
    if classes is not None and classes != getattr(model, "num_classes", None):
        model.reset_classifier(classes)
        kwargs = {**kwargs, "num_classes": classes}
    load_weights(model, checkpoint, state=state)
    return kwargs


def load_timm(
    name: str,
    checkpoint: str | None,
    random_init: bool,
    kwargs: dict[str, Any],
    allow_pickle: bool = False,
    pretrained_cfg: dict[str, Any] | None = None,
) -> nn.Module:
    import timm

    # timm's own names for a directory or a hub repository of a timm model
    if name.startswith(("local-dir:", "hf-hub:")):
        kind, _, where = name.partition(":")
        path = (
            Path(where).expanduser()
            if kind == "local-dir"
            else hf_snapshot(where, random_init or bool(checkpoint), allow_pickle)
        )
        if not is_timm_dir(path):
            raise PelaError(
                f"timm:{name} is not a timm model (its config.json names no timm architecture)"
            )
        model = timm_from_dir(path, random_init or bool(checkpoint), kwargs, allow_pickle)
        if checkpoint:
            kwargs = _load_timm_checkpoint(model, checkpoint, kwargs, allow_pickle)
            info(model).source = timm_source(model, kwargs)
        return model
    if not timm.is_model(name.split(".", 1)[0]):
        close = timm.list_models(f"*{name.split('.', 1)[0][:6]}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise PelaError(f"timm has no model named {name!r}{hint}")
    extra = {"pretrained_cfg": _known_cfg_fields(pretrained_cfg)} if pretrained_cfg else {}
    if checkpoint or random_init:
        model = timm.create_model(name, pretrained=False, **extra, **kwargs)
        if checkpoint:
            kwargs = _load_timm_checkpoint(model, checkpoint, kwargs, allow_pickle)
    else:
        try:
            with offline_unless_reachable():
                model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as e:  # noqa: BLE001 - offline, or weights timm cannot fetch
            raise PelaError(
                f"could not fetch pretrained weights for timm:{name} ({type(e).__name__}; "
                "offline?): "
                "pass --checkpoint FILE.safetensors, or random_init=true for an untrained model"
            ) from e
    info(model).source = {"kind": "timm", "name": name, "kwargs": kwargs}
    return model.eval()
