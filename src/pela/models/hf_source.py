"""Hugging Face models: from a directory or the hub, with remote code only when trusted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pela.errors import PelaError
from pela.metadata import info
from pela.models.hf_weights import class_for_weights, stored_names, warn_missing
from pela.models.hub import offline_unless_reachable
from pela.models.weights import (
    check_safetensors,
    load_pickled_tensors,
    stored_float_dtype,
)

HF_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def _hf_class(config: Any) -> type:
    """The transformers class named in ``config.architectures`` (allow-listed to PreTrainedModel),
    else AutoModel."""
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    return transformers.AutoModel


def _remote_auto_class(config: Any) -> str | None:
    """For a model whose code comes with it (``auto_map`` in its config, a type transformers lacks):
    the auto class (``AutoModel``, ``AutoModelForSequenceClassification``, ...) that maps to the
    class its config names, else ``AutoModel``; None for a model transformers builds itself."""
    import transformers

    auto_map = getattr(config, "auto_map", None)
    models = {k: v[0] if isinstance(v, (list, tuple)) else v
              for k, v in (auto_map or {}).items() if k.startswith("AutoModel")}
    # a config of a known type may still name code of its own (model_type "bert", say, and a class
    # transformers lacks): built as transformers' own type, its weights would fit only in part
    if not models or _hf_class(config) is not transformers.AutoModel:
        return None
    named = set(getattr(config, "architectures", None) or [])
    fallback = "AutoModel" if "AutoModel" in models else next(iter(models))
    return next((k for k, target in models.items()
                 if isinstance(target, str) and target.rpartition(".")[2] in named), fallback)


def untrusted_code_error(path: Path) -> PelaError:
    code = ", ".join(sorted(p.name for p in path.glob("*.py")))
    code = code or "code named in its config.json auto_map"
    return PelaError(f"{path} runs its own model code ({code}); pela runs it only with "
                     "--trust-remote-code (Python: trust_remote_code=True), which you should pass "
                     "only after reading that code")


def weight_files(path: Path, allow_pickle: bool) -> tuple[list[Path], list[Path]]:
    """A model directory's safetensors files and pickled weight files; an error if it has no weights
    pela may read."""
    safe = sorted(path.glob("*.safetensors"))
    pickles = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not safe and not (pickles and allow_pickle):
        found = ", ".join(p.name for p in pickles)
        extra = f" (found {found}: pickle files are loaded only with allow_pickle=true)"
        raise PelaError(f"{path} has no .safetensors weights{extra if pickles else ''}; use "
                        "random_init=true for an untrained model")
    return safe, pickles


def hf_from_dir(path: Path, random_init: bool, allow_pickle: bool = False,
                trust_remote_code: bool = False, task_class: str | None = None,
                num_labels: int | None = None) -> nn.Module:
    """``task_class`` (an auto class such as ``AutoModelForSequenceClassification``) and
    ``num_labels`` override what the config names: a LoRA adapter's task and head say which model it
    was trained on."""
    import transformers

    config = _config(path, trust_remote_code)
    remote = _remote_auto_class(config)
    if remote and not trust_remote_code:
        raise untrusted_code_error(path)
    if remote:
        cls = getattr(transformers, remote, None)
    else:
        cls = getattr(transformers, task_class) if task_class else _hf_class(config)
    if cls is None:
        raise PelaError(f"{path}/config.json maps its code to {remote!r}, which is no "
                        "transformers auto class")
    auto = remote is not None or task_class is not None or cls is transformers.AutoModel
    code = {"trust_remote_code": trust_remote_code} if auto else {}
    resized = num_labels is not None and num_labels != getattr(config, "num_labels", None)
    if resized:  # the checkpoint's head is then replaced by the adapter's copy of it
        config.num_labels = num_labels
    if random_init:
        build = cls.from_config if auto else cls._from_config
        model = build(config, dtype=torch.float32, **code)
    else:
        model = _pretrained(path, cls, config, allow_pickle, code, resized, auto)
    info(model).source = {"kind": "hf", "class": type(model).__name__}
    # rebuilt by pela.load from the code copied beside the weights, again only when trusted
    if remote:
        info(model).source.update(remote_code=True, auto_class=remote)
    info(model).files = str(path)
    info(model).pooling = sentence_transformers_pooling(path)
    return model.eval()


def _config(path: Path, trust_remote_code: bool) -> Any:
    import transformers

    try:  # trust_remote_code=False said outright: transformers would otherwise ask on the terminal
        return transformers.AutoConfig.from_pretrained(str(path),
                                                       trust_remote_code=trust_remote_code)
    except Exception as e:
        if not trust_remote_code and "trust_remote_code" in str(e):
            raise untrusted_code_error(path) from e
        raise PelaError(f"{path}/config.json is not a usable Hugging Face config: "
                        f"{str(e).splitlines()[0]}") from None


def _pretrained(path: Path, cls: type, config: Any, allow_pickle: bool, code: dict,
                resized: bool, auto: bool) -> nn.Module:
    """The model in ``path`` with its weights, each file checked before transformers reads it."""
    import transformers

    shards, pickles = weight_files(path, allow_pickle)
    for shard in shards:
        check_safetensors(shard)
    for pickled in pickles if not shards else []:
        # refuse anything but tensors before transformers reads it
        load_pickled_tensors(pickled)
    # the class the weights describe (the base model, when the head's are absent)
    if not auto and not resized:
        cls = class_for_weights(cls, config, stored_names(shards))
    # transformers reads .bin files with torch.load(weights_only=True) too. Weights shared in
    # float16/bfloat16 are loaded in float32: SVD and training need it; --dtype runs in half
    resize = {"config": config, "ignore_mismatched_sizes": True} if resized else {}
    verbosity = transformers.logging.get_verbosity()
    # its report of the head it reinitializes would alarm: the adapter's head replaces it
    if resized:
        transformers.logging.set_verbosity_error()
    try:
        model, loading_info = cls.from_pretrained(
            str(path), use_safetensors=bool(shards), dtype=torch.float32,
            output_loading_info=True, **code, **resize)
    except Exception as e:
        raise PelaError(f"could not load the Hugging Face model in {path}: "
                        f"{str(e).splitlines()[0]}") from e
    finally:
        transformers.logging.set_verbosity(verbosity)
    if not resized:  # a resized head is replaced by the adapter's copy
        warn_missing(path, model, loading_info)
    note_half_precision(model, stored_float_dtype(shards[0]) if shards else None)
    return model


HALF = (torch.float16, torch.bfloat16)


def note_half_precision(model: nn.Module, stored: torch.dtype | None) -> None:
    """Remember that the weights came in half precision (``weights_dtype`` of `pela.metadata.info`),
    so that a command saving the float32 model can say how to keep their size."""
    if stored in HALF:
        info(model).weights_dtype = str(stored).removeprefix("torch.")


def _st_modules(path: Path) -> list[dict[str, Any]]:
    """The modules a sentence-transformers directory lists in its modules.json (none elsewhere)."""
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return []
    return [m for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []


def _st_module_dir(root: Path, kind: str) -> Path | None:
    """The folder of the sentence-transformers module of ``kind`` (``Transformer``, ``Pooling``)
    under ``root``."""
    for module in _st_modules(root):
        if str(module.get("type", "")).endswith(f".{kind}"):
            inner = (root / str(module.get("path", ""))).resolve()
            if inner.is_relative_to(root.resolve()) and inner.is_dir():
                return inner
    return None


def sentence_transformer_dir(path: Path) -> Path | None:
    """The Hugging Face model directory of a sentence-transformers model (modules.json names it), if
    any."""
    inner = _st_module_dir(path, "Transformer")
    return inner if inner is not None and (inner / "config.json").is_file() else None


# the poolings a pela head can take
ST_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}


def sentence_transformers_pooling(path: Path) -> str | None:
    """How the sentence-transformers model whose Transformer is in ``path`` (the directory itself,
    or its ``0_Transformer/``) pools its tokens, by its ``1_Pooling/config.json``, as the default
    pooling of a head pela adds; None when ``path`` is no such model, or it pools otherwise (max,
    last token)."""
    inner = _st_module_dir(path.parent, "Transformer") == path.resolve()
    roots = [path] + ([path.parent] if inner else [])
    folders = (_st_module_dir(root, "Pooling") for root in roots)
    folder = next((p for p in folders if p is not None), None)
    try:
        modes = json.loads((folder / "config.json").read_text()) if folder is not None else None
    except (OSError, ValueError):
        return None
    if not isinstance(modes, dict):
        return None
    chosen = [mode for key, mode in ST_POOLING.items() if modes.get(key) is True]
    return chosen[0] if len(chosen) == 1 else None


def hf_snapshot(repo_id: str, random_init: bool, allow_pickle: bool = False,
                trust_remote_code: bool = False) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model", "*.jinja"] if random_init else HF_WEIGHT_PATTERNS
    if allow_pickle and not random_init:
        patterns = patterns + [f"*{suffix}" for suffix in PICKLE_SUFFIXES]
    if trust_remote_code:
        patterns = patterns + ["*.py"]
    try:
        with offline_unless_reachable():
            return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001 - offline, not cached, no such repository, no access
        raise PelaError(
            f"could not get {repo_id} from the Hugging Face hub ({type(e).__name__}): offline and "
            "not in the local cache, or no such repository; download it where you are online, or "
            "pass its local directory"
        ) from e
