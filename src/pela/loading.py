"""Turning a model name into a model: ``timm:NAME``, ``hf:ID``, or a local directory.

Every model loaded here remembers where it came from (``model.pela_source``), which is what
`pela.save_pretrained` records so `pela.load` can rebuild the architecture without pickles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .errors import PelaError
from .io import check_safetensors, is_pela_dir, load_pickled_tensors, load_weights

HF_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
SOURCE_HELP = "use timm:NAME, hf:ORG/NAME, or a local directory (saved by pela or by Hugging Face save_pretrained)"


def _hf_class(config: Any) -> type:
    """The transformers class named in ``config.architectures`` (allow-listed to PreTrainedModel), else AutoModel."""
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    return transformers.AutoModel


def _hf_from_dir(path: Path, random_init: bool, allow_pickle: bool = False) -> nn.Module:
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(str(path))
    except Exception as e:
        raise PelaError(f"{path}/config.json is not a usable Hugging Face config: {str(e).splitlines()[0]}") from None
    cls = _hf_class(config)
    if random_init:
        model = cls.from_config(config) if cls is transformers.AutoModel else cls._from_config(config)
    else:
        shards = sorted(path.glob("*.safetensors"))
        pickles = [p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        if not shards and not (pickles and allow_pickle):
            extra = f" (found {', '.join(pickles)}: pickle files are loaded only with --allow-pickle)" if pickles else ""
            raise PelaError(f"{path} has no .safetensors weights{extra}; use --random-init for an untrained model")
        for shard in shards:
            check_safetensors(shard)
        for name in pickles if not shards else []:
            load_pickled_tensors(path / name)  # refuse anything but tensors before transformers reads it
        try:
            # transformers reads .bin files with torch.load(weights_only=True) too
            model = cls.from_pretrained(str(path), use_safetensors=bool(shards))
        except Exception as e:
            raise PelaError(f"could not load the Hugging Face model in {path}: {str(e).splitlines()[0]}") from None
    model.pela_source = {"kind": "hf", "class": type(model).__name__}
    model.pela_files = str(path)
    return model.eval()


def _load_timm(name: str, checkpoint: str | None, random_init: bool, kwargs: dict[str, Any], allow_pickle: bool = False) -> nn.Module:
    import timm

    if not timm.is_model(name.split(".", 1)[0]):
        close = timm.list_models(f"*{name.split('.', 1)[0][:6]}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise PelaError(f"timm has no model named {name!r}{hint}")
    if checkpoint or random_init:
        model = timm.create_model(name, pretrained=False, **kwargs)
        if checkpoint:
            load_weights(model, checkpoint, allow_pickle=allow_pickle)
    else:
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as e:
            raise PelaError(
                f"could not fetch pretrained weights for timm:{name} ({type(e).__name__}; offline?): "
                "pass --checkpoint FILE.safetensors, or --random-init for an untrained model"
            ) from None
    model.pela_source = {"kind": "timm", "name": name, "kwargs": kwargs}
    return model.eval()


def _hf_snapshot(repo_id: str, random_init: bool) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model", "*.jinja"] if random_init else HF_WEIGHT_PATTERNS
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:
        raise PelaError(
            f"could not get hf:{repo_id} from the Hugging Face hub ({type(e).__name__}): offline and not in the local "
            "cache, or no such repository; download it where you are online, or pass its local directory"
        ) from None


def load_model(source: str, *, checkpoint: str | None = None, random_init: bool = False, allow_pickle: bool = False,
               **kwargs: Any) -> nn.Module:
    """Load a model the way users name it, in eval mode.

    Args:
        source: ``timm:NAME`` (pretrained weights from the hub unless ``checkpoint``/``random_init``),
            ``hf:ORG/NAME`` (downloaded, or from the local cache when offline), or a local directory
            written by `pela.save_pretrained` or by Hugging Face ``save_pretrained``.
        checkpoint: a safetensors file with weights for a ``timm:`` architecture.
        random_init: build the architecture without pretrained weights (smoke tests, benchmarks).
        allow_pickle: also read legacy torch.save weights (``--checkpoint x.pt``, a Hugging Face directory
            with only ``pytorch_model.bin``), with ``torch.load(weights_only=True)``, which refuses
            anything but tensors. Off by default: pela never unpickles a file it did not write.
        **kwargs: passed to ``timm.create_model`` (e.g. ``num_classes``).
    """
    if not isinstance(source, str) or not source:
        raise PelaError(f"model source must be a non-empty string; {SOURCE_HELP}")
    if checkpoint and random_init:
        raise PelaError("give either --checkpoint or --random-init, not both")
    if source.startswith("timm:"):
        return _load_timm(source[5:], checkpoint, random_init, kwargs, allow_pickle)
    if checkpoint:
        raise PelaError("--checkpoint applies to timm: sources only")
    if source.startswith("hf:"):
        return _hf_from_dir(_hf_snapshot(source[3:], random_init), random_init, allow_pickle)
    path = Path(source).expanduser()
    if path.is_dir():
        if is_pela_dir(path):
            from .io import load

            return load(path)
        if (path / "config.json").is_file():
            return _hf_from_dir(path, random_init, allow_pickle)
        raise PelaError(f"{path} holds neither a pela model (pela.json) nor a Hugging Face model (config.json)")
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
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("architecture"):
        return {"kind": "timm", "name": cfg["architecture"], "kwargs": {"num_classes": getattr(model, "num_classes", 1000)}}
    return None


def build_architecture(source: dict[str, Any], directory: Path) -> nn.Module:
    """A freshly initialized dense model of the recorded source (weights are loaded afterwards)."""
    kind = source.get("kind")
    if kind == "timm":
        name, kwargs = source.get("name"), source.get("kwargs") or {}
        if not isinstance(name, str) or not isinstance(kwargs, dict):
            raise PelaError(f"{directory}/pela.json records a malformed timm source")
        model = _load_timm(name, None, True, kwargs)
        del model.pela_source  # the caller sets what was recorded
        return model
    if kind == "hf":
        import transformers

        config = transformers.AutoConfig.from_pretrained(str(directory))
        cls = getattr(transformers, source.get("class", ""), None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise PelaError(f"unknown transformers model class {source.get('class')!r} in {directory}")
        return cls._from_config(config)
    raise PelaError(f"unknown model source kind {kind!r} in {directory}")
