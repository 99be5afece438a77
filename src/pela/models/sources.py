"""Turning a model name into a model: ``timm:NAME``, ``hf:ID``, or a local directory.

Every model loaded here remembers where it came from (``model.pela_source``), which is what
`pela.save_pretrained` records so `pela.load` can rebuild the architecture without pickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pela.errors import PelaError
from pela.models.io import check_safetensors, is_pela_dir, load_pickled_tensors, load_weights, read_weights, stored_float_dtype, without_wrapper_prefix

HF_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
SOURCE_HELP = "use timm:NAME, hf:ORG/NAME, or a local directory (saved by pela, by Hugging Face save_pretrained, by timm, or a peft LoRA adapter)"
# what the rebuilt model does not need to know of where its weights came from
_CFG_LOCATION_KEYS = ("file", "source", "url", "hf_hub_id", "hf_hub_filename", "state_dict")


def _hf_class(config: Any) -> type:
    """The transformers class named in ``config.architectures`` (allow-listed to PreTrainedModel), else AutoModel."""
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    return transformers.AutoModel


def _remote_auto_class(config: Any) -> str | None:
    """For a model whose code comes with it (``auto_map`` in its config, a type transformers lacks): the
    auto class (``AutoModel``, ``AutoModelForSequenceClassification``, ...) that maps to the class its
    config names, else ``AutoModel``; None for a model transformers builds itself."""
    import transformers

    auto_map = getattr(config, "auto_map", None)
    models = {k: v[0] if isinstance(v, (list, tuple)) else v for k, v in (auto_map or {}).items() if k.startswith("AutoModel")}
    # a config of a known type may still name code of its own (model_type "bert", say, and a class
    # transformers lacks): built as transformers' own type, its weights would fit only in part
    if not models or _hf_class(config) is not transformers.AutoModel:
        return None
    named = set(getattr(config, "architectures", None) or [])
    return next((k for k, target in models.items() if isinstance(target, str) and target.rpartition(".")[2] in named),
                "AutoModel" if "AutoModel" in models else next(iter(models)))


def _untrusted_code_error(path: Path) -> PelaError:
    code = ", ".join(sorted(p.name for p in path.glob("*.py"))) or "code named in its config.json auto_map"
    return PelaError(f"{path} runs its own model code ({code}); pela runs it only with --trust-remote-code "
                     "(Python: trust_remote_code=True), which you should pass only after reading that code")


def _weight_files(path: Path, allow_pickle: bool) -> tuple[list[Path], list[Path]]:
    """A model directory's safetensors files and pickled weight files; an error if it has no weights pela may read."""
    safe = sorted(path.glob("*.safetensors"))
    pickles = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not safe and not (pickles and allow_pickle):
        extra = f" (found {', '.join(p.name for p in pickles)}: pickle files are loaded only with --allow-pickle)" if pickles else ""
        raise PelaError(f"{path} has no .safetensors weights{extra}; use --random-init for an untrained model")
    return safe, pickles


def _hf_from_dir(path: Path, random_init: bool, allow_pickle: bool = False, trust_remote_code: bool = False,
                 task_class: str | None = None, num_labels: int | None = None) -> nn.Module:
    """``task_class`` (an auto class such as ``AutoModelForSequenceClassification``) and ``num_labels``
    override what the config names: a LoRA adapter's task and head say which model it was trained on."""
    import transformers

    try:  # trust_remote_code=False said outright: transformers would otherwise ask on the terminal
        config = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as e:
        if not trust_remote_code and "trust_remote_code" in str(e):
            raise _untrusted_code_error(path) from None
        raise PelaError(f"{path}/config.json is not a usable Hugging Face config: {str(e).splitlines()[0]}") from None
    remote = _remote_auto_class(config)
    if remote and not trust_remote_code:
        raise _untrusted_code_error(path)
    cls = getattr(transformers, remote, None) if remote else getattr(transformers, task_class) if task_class else _hf_class(config)
    if cls is None:
        raise PelaError(f"{path}/config.json maps its code to {remote!r}, which is no transformers auto class")
    auto = remote is not None or task_class is not None or cls is transformers.AutoModel
    code = {"trust_remote_code": trust_remote_code} if auto else {}
    resized = num_labels is not None and num_labels != getattr(config, "num_labels", None)
    if resized:  # the checkpoint's head is then replaced by the adapter's copy of it
        config.num_labels = num_labels
    if random_init:
        build = cls.from_config if auto else cls._from_config
        model = build(config, dtype=torch.float32, **code)
    else:
        shards, pickles = _weight_files(path, allow_pickle)
        for shard in shards:
            check_safetensors(shard)
        for pickled in pickles if not shards else []:
            load_pickled_tensors(pickled)  # refuse anything but tensors before transformers reads it
        try:
            # transformers reads .bin files with torch.load(weights_only=True) too. Weights shared in
            # float16/bfloat16 are loaded in float32: SVD and training need it; --dtype runs in half
            resize = {"config": config, "ignore_mismatched_sizes": True} if resized else {}
            verbosity = transformers.logging.get_verbosity()
            if resized:  # its report of the head it reinitializes would alarm: the adapter's head replaces it
                transformers.logging.set_verbosity_error()
            try:
                model = cls.from_pretrained(str(path), use_safetensors=bool(shards), dtype=torch.float32, **code, **resize)
            finally:
                transformers.logging.set_verbosity(verbosity)
        except Exception as e:
            raise PelaError(f"could not load the Hugging Face model in {path}: {str(e).splitlines()[0]}") from None
        _note_half_precision(model, stored_float_dtype(shards[0]) if shards else None)
    model.pela_source = {"kind": "hf", "class": type(model).__name__}
    if remote:  # rebuilt by pela.load from the code copied beside the weights, again only when trusted
        model.pela_source.update(remote_code=True, auto_class=remote)
    model.pela_files = str(path)
    return model.eval()


HALF = (torch.float16, torch.bfloat16)


def _note_half_precision(model: nn.Module, stored: torch.dtype | None) -> None:
    """Remember that the weights came in half precision (``pela_weights_dtype``), so that a command
    saving the float32 model can say how to keep their size."""
    if stored in HALF:
        model.pela_weights_dtype = str(stored).removeprefix("torch.")


def _jsonable(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists), or None if JSON cannot hold it."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def timm_source(model: nn.Module, kwargs: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """How to rebuild a timm model: architecture, constructor arguments and its preprocessing config.

    The arguments are timm's own record of how the model was built (``get_model_args``, which follows
    ``reset_classifier``), else ``kwargs``; the pretrained config keeps the normalization and crop of
    the weights it came with, which the registry's default for the architecture may not share.
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    if not cfg.get("architecture"):
        return None
    args = None
    try:
        from timm.models import get_model_args

        args = _jsonable(get_model_args(model)) if getattr(model, "_model_args", None) is not None else None
    except Exception:  # noqa: BLE001 - an older timm, or arguments it cannot report: fall back
        args = None
    if args is None:
        args = _jsonable(kwargs or {"num_classes": getattr(model, "num_classes", 1000)})
    if args is None:
        return None
    pretrained_cfg = _jsonable({k: v for k, v in cfg.items() if k not in _CFG_LOCATION_KEYS})
    return {"kind": "timm", "name": cfg["architecture"], "kwargs": args, "pretrained_cfg": pretrained_cfg}


def _known_cfg_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """The fields of a recorded pretrained config that this timm knows (another version may have more)."""
    import dataclasses

    from timm.models import PretrainedCfg

    known = {f.name for f in dataclasses.fields(PretrainedCfg)}
    return {k: v for k, v in cfg.items() if k in known}


def _is_timm_dir(path: Path) -> bool:
    """A directory in timm's hub format: config.json names an ``architecture`` (Hugging Face's name a ``model_type``)."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and isinstance(cfg.get("architecture"), str) and "model_type" not in cfg


def _timm_from_dir(path: Path, random_init: bool, kwargs: dict[str, Any], allow_pickle: bool = False) -> nn.Module:
    """A timm model saved the way timm shares it (``save_for_hf``, a hub snapshot): config.json + weights."""
    import timm

    try:
        model = timm.create_model(f"local-dir:{path}", pretrained=False, **kwargs)
    except Exception as e:  # noqa: BLE001 - timm raises many kinds for a config it cannot build
        raise PelaError(f"{path}/config.json is not a usable timm config: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not random_init:
        safe, pickles = _weight_files(path, allow_pickle)
        load_weights(model, (sorted(safe, key=lambda p: p.name != "model.safetensors") or pickles)[0], allow_pickle=allow_pickle)
    model.pela_source = timm_source(model, kwargs)
    return model.eval()


def _checkpoint_classes(model: nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """How many classes the classifier in ``state`` has (0: the checkpoint has none), by timm's name for
    the model's classifier; None when the model names none or the checkpoint's is of another layout."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    names = [names] if isinstance(names, str) else [n for n in names or () if isinstance(n, str)]
    if not names or not hasattr(model, "reset_classifier"):
        return None
    weight = state.get(f"{names[0]}.weight")
    if weight is not None:
        return int(weight.shape[0]) if weight.ndim == 2 else None
    return None if any(key.startswith(f"{name}.") for key in state for name in names) else 0


def _load_timm_checkpoint(model: nn.Module, checkpoint: str, kwargs: dict[str, Any], allow_pickle: bool) -> dict[str, Any]:
    """Load ``checkpoint`` into a timm model built without weights, and return its constructor arguments.

    A checkpoint fine-tuned to another number of classes, or saved without a classifier
    (``num_classes=0``), gets a head of its size (``reset_classifier``), as ``num_classes`` would give,
    unless the caller chose ``num_classes``.
    """
    state = without_wrapper_prefix(read_weights(checkpoint, allow_pickle), model.state_dict())
    classes = None if "num_classes" in kwargs else _checkpoint_classes(model, state)
    if classes is not None and classes != getattr(model, "num_classes", None):
        model.reset_classifier(classes)
        kwargs = {**kwargs, "num_classes": classes}
    load_weights(model, checkpoint, state=state)
    return kwargs


def _load_timm(name: str, checkpoint: str | None, random_init: bool, kwargs: dict[str, Any], allow_pickle: bool = False,
               pretrained_cfg: dict[str, Any] | None = None) -> nn.Module:
    import timm

    if name.startswith(("local-dir:", "hf-hub:")):  # timm's own names for a directory or a hub repository of a timm model
        kind, _, where = name.partition(":")
        path = Path(where).expanduser() if kind == "local-dir" else _hf_snapshot(where, random_init or bool(checkpoint), allow_pickle)
        if not _is_timm_dir(path):
            raise PelaError(f"timm:{name} is not a timm model (its config.json names no timm architecture)")
        model = _timm_from_dir(path, random_init or bool(checkpoint), kwargs, allow_pickle)
        if checkpoint:
            kwargs = _load_timm_checkpoint(model, checkpoint, kwargs, allow_pickle)
            model.pela_source = timm_source(model, kwargs)
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
            model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as e:  # noqa: BLE001 - offline, or weights timm cannot fetch
            raise PelaError(
                f"could not fetch pretrained weights for timm:{name} ({type(e).__name__}; offline?): "
                "pass --checkpoint FILE.safetensors, or --random-init for an untrained model"
            ) from None
    model.pela_source = {"kind": "timm", "name": name, "kwargs": kwargs}
    return model.eval()


def _sentence_transformer_dir(path: Path) -> Path | None:
    """The Hugging Face model directory of a sentence-transformers model (modules.json names it), if any."""
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".Transformer"):
            inner = (path / str(module.get("path", ""))).resolve()
            if inner.is_relative_to(path.resolve()) and (inner / "config.json").is_file():
                return inner
    return None


def _hf_snapshot(repo_id: str, random_init: bool, allow_pickle: bool = False, trust_remote_code: bool = False) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model", "*.jinja"] if random_init else HF_WEIGHT_PATTERNS
    if allow_pickle and not random_init:
        patterns = patterns + [f"*{suffix}" for suffix in PICKLE_SUFFIXES]
    if trust_remote_code:
        patterns = patterns + ["*.py"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001 - offline, not cached, no such repository, no access
        raise PelaError(
            f"could not get {repo_id} from the Hugging Face hub ({type(e).__name__}): offline and not in the local "
            "cache, or no such repository; download it where you are online, or pass its local directory"
        ) from None


def load_model(source: str, *, checkpoint: str | None = None, random_init: bool = False, allow_pickle: bool = False,
               trust_remote_code: bool = False, **kwargs: Any) -> nn.Module:
    """Load a model the way users name it, in eval mode.

    Args:
        source: ``timm:NAME`` (pretrained weights from the hub unless ``checkpoint``/``random_init``;
            also ``timm:hf-hub:ORG/NAME``), ``hf:ORG/NAME`` (downloaded, or from the local cache when
            offline), or a local directory written by `pela.save_pretrained` (in float32 even if saved
            in half precision, to train; `pela.load` keeps the saved dtype), by Hugging Face
            ``save_pretrained``, by timm (``save_for_hf``; a hub snapshot of a timm model), or by
            peft (a LoRA adapter: its base model is loaded and the adapter merged in).
        checkpoint: a safetensors file with weights for a ``timm:`` architecture.
        random_init: build the architecture without pretrained weights (smoke tests, benchmarks).
        allow_pickle: also read legacy torch.save weights (``--checkpoint x.pt``, a Hugging Face directory
            with only ``pytorch_model.bin``), with ``torch.load(weights_only=True)``, which refuses
            anything but tensors. Off by default: pela never unpickles a file it did not write.
        trust_remote_code: run the model code a Hugging Face model brings along (``auto_map`` in its
            config, ``*.py`` beside it) for an architecture transformers lacks. Off by default: that
            code runs with your permissions, so read it first.
        **kwargs: passed to ``timm.create_model`` for timm models (e.g. ``num_classes``).
    """
    if not isinstance(source, str) or not source:
        raise PelaError(f"model source must be a non-empty string; {SOURCE_HELP}")
    if checkpoint and random_init:
        raise PelaError("give either --checkpoint or --random-init, not both")
    if source.startswith("timm:"):
        return _load_timm(source[5:], checkpoint, random_init, kwargs, allow_pickle)
    if checkpoint:
        raise PelaError("a checkpoint file applies to timm: sources only (a directory or hf: model brings its own weights)")
    if source.startswith("hf:"):
        path = _hf_snapshot(source[3:], random_init, allow_pickle, trust_remote_code)
        if _is_timm_dir(path):  # a timm repository on the hub (timm/NAME): timm builds it, not transformers' wrapper
            return _timm_from_dir(path, random_init, kwargs, allow_pickle)
        return _hf_from_dir(path, random_init, allow_pickle, trust_remote_code)
    path = Path(source).expanduser()
    if path.is_dir():
        if is_pela_dir(path):
            from pela.models.io import load

            model = load(path, trust_remote_code=trust_remote_code)
            half = next((p.dtype for p in model.parameters() if p.dtype in HALF), None)
            _note_half_precision(model, half)
            return model.float() if half else model  # saved in half precision to ship: as for hub weights, train in float32
        if _is_timm_dir(path):
            return _timm_from_dir(path, random_init, kwargs, allow_pickle)
        if (path / "config.json").is_file():
            return _hf_from_dir(path, random_init, allow_pickle, trust_remote_code)
        if (path / "adapter_config.json").is_file():  # a LoRA (peft) fine-tune: its base with the adapter merged in
            from pela.models.adapters import load_adapter

            return load_adapter(path, random_init=random_init, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        inner = _sentence_transformer_dir(path)
        if inner is not None:  # an older sentence-transformers layout: the Transformer in 0_Transformer/
            return _hf_from_dir(inner, random_init, allow_pickle, trust_remote_code)
        raise PelaError(f"{path} holds neither a pela model (pela.json), a Hugging Face or timm model (config.json) "
                        "nor a LoRA adapter (adapter_config.json)")
    if path.exists():
        raise PelaError(f"{source} is a file, not a model directory; {SOURCE_HELP}")
    hint = f" (for the Hugging Face hub, write hf:{source})" if source.count("/") == 1 and not source.startswith((".", "/")) else ""
    raise PelaError(f"unknown model source {source!r}{hint}; {SOURCE_HELP}")


def source_of(model: nn.Module) -> dict[str, Any] | None:
    """How to rebuild ``model``'s architecture: recorded by `load_model`, else inferred, else None."""
    recorded = getattr(model, "pela_source", None)
    if recorded:
        return recorded
    try:
        import transformers

        if isinstance(model, transformers.PreTrainedModel):
            return {"kind": "hf", "class": type(model).__name__}
    except ImportError:
        pass
    return timm_source(model)


def build_architecture(source: dict[str, Any], directory: Path, trust_remote_code: bool = False) -> nn.Module:
    """A freshly initialized dense model of the recorded source (weights are loaded afterwards)."""
    kind = source.get("kind")
    if kind == "timm":
        name, kwargs = source.get("name"), source.get("kwargs") or {}
        if not isinstance(name, str) or not isinstance(kwargs, dict):
            raise PelaError(f"{directory}/pela.json records a malformed timm source")
        pretrained_cfg = source.get("pretrained_cfg")
        if pretrained_cfg is not None and not isinstance(pretrained_cfg, dict):
            raise PelaError(f"{directory}/pela.json records a malformed timm source")
        model = _load_timm(name, None, True, kwargs, pretrained_cfg=pretrained_cfg)
        del model.pela_source  # the caller sets what was recorded
        return model
    if kind == "hf" and source.get("remote_code"):
        import transformers

        if not trust_remote_code:
            raise _untrusted_code_error(directory)
        auto = getattr(transformers, str(source.get("auto_class", "")), None)
        if not (isinstance(auto, type) and str(source.get("auto_class")).startswith("AutoModel")):
            raise PelaError(f"{directory}/pela.json records a malformed Hugging Face source")
        config = transformers.AutoConfig.from_pretrained(str(directory), trust_remote_code=True)
        model = auto.from_config(config, trust_remote_code=True, dtype=torch.float32)
        if type(model).__name__ != source.get("class"):
            raise PelaError(f"{directory} builds a {type(model).__name__}, not the {source.get('class')} it records")
        return model
    if kind == "hf":
        import transformers

        config = transformers.AutoConfig.from_pretrained(str(directory), trust_remote_code=False)
        cls = getattr(transformers, source.get("class", ""), None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise PelaError(f"unknown transformers model class {source.get('class')!r} in {directory}")
        return cls._from_config(config, dtype=torch.float32)  # `load` gives it the saved weights' dtype
    raise PelaError(f"unknown model source kind {kind!r} in {directory}")
