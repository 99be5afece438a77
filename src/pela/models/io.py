"""Saving and loading compressed models: safetensors for weights, JSON for everything else.

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
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from pela.errors import PelaError
from pela.layers.lowrank import LowRankLinear

FORMAT_VERSION = 1
CONFIG_NAME = "pela.json"
WEIGHTS_NAME = "model.safetensors"
# files of a Hugging Face model directory that are not weights but belong with the model
COMPANION_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model", "preprocessor_config.json", "processor_config.json",
                   "image_processor_config.json", "generation_config.json", "chat_template.jinja")


# ---------------------------------------------------------------- atomic output
def check_output_dir(directory: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an output directory that is a file, is non-empty (unless ``overwrite``) or unwritable."""
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise PelaError(f"output {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise PelaError(f"output directory {path} already exists and is not empty (use --overwrite to replace it)")
    check_parent(path)
    return path


def check_parent(path: Path) -> None:
    """Refuse ``path`` if its folder could not be made and written in.

    Missing folders are created when the output is written (as ``save_pretrained`` does); this only
    checks, before any slow work starts, that the nearest existing one is a writable directory.
    """
    parent = path.absolute().parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PelaError(f"cannot create {parent}: {existing} is not a directory")
    if not os.access(existing, os.W_OK):
        raise PelaError(f"cannot write to {existing} (permission denied)")


@contextlib.contextmanager
def atomic_dir(directory: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``directory`` only if the block succeeds."""
    path = check_output_dir(directory, overwrite)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.absolute().parent))
    try:
        yield tmp
        _default_permissions(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _default_permissions(root: Path) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; give them the modes a plain mkdir/open would."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [root, *root.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.absolute().parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _default_permissions(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- safe reading
def is_pickle(path: str | os.PathLike) -> bool:
    """True for a torch.save file (zip archive or raw pickle), judged by its first bytes.

    A safetensors file starts with its header's length (8 bytes, little-endian) and then ``{``, so a
    header 0x0a80 bytes long also starts with 0x80: the ``{`` after the length tells the two apart.
    """
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":
        return False
    return head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def check_safetensors(path: str | os.PathLike) -> Path:
    """Raise `PelaError` unless ``path`` is a well-formed safetensors file (header checked, nothing run)."""
    path = Path(path)
    if not path.is_file():
        raise PelaError(f"weights file {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    if is_pickle(path):
        raise PelaError(f"{path} is a pickle/zip archive (torch.save format), not safetensors; pela never unpickles files it did not "
                        "write (to read its tensors anyway with torch.load(weights_only=True), pass --allow-pickle)")
    if len(head) < 8:
        raise PelaError(f"{path} is not a safetensors file (only {size} bytes)")
    (header_len,) = struct.unpack("<Q", head)
    if header_len > size - 8:
        raise PelaError(f"{path} is not a valid safetensors file (truncated or corrupt header)")
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                f.get_slice(key)  # validates offsets against the file size
    except Exception as e:  # safetensors raises its own error types
        raise PelaError(f"{path} is not a valid safetensors file: {str(e).splitlines()[0]}") from None
    return path


def load_pickled_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a legacy torch.save file, read with ``torch.load(weights_only=True)``: its restricted
    unpickler builds tensors and plain containers only and refuses anything that would run code."""
    path = Path(path)
    if not path.is_file():
        raise PelaError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for forbidden globals, RuntimeError for broken archives
        raise PelaError(f"{path} cannot be read safely with torch.load(weights_only=True): {str(e).splitlines()[0][:200]}") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common wrappers of training scripts
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise PelaError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return obj


def read_weights(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (checked first), or with ``allow_pickle`` of a legacy torch.save file."""
    from safetensors.torch import load_file

    path = Path(path)
    if allow_pickle and path.is_file() and is_pickle(path):
        return load_pickled_tensors(path)
    return load_file(check_safetensors(path))


def without_wrapper_prefix(state: dict[str, torch.Tensor], names: Any) -> dict[str, torch.Tensor]:
    """``state`` with the prefix a training wrapper put on every name (DDP's ``module.``, Lightning's
    ``model.``, ``torch.compile``'s ``_orig_mod.``) taken off, where no name fits the model's ``names``
    as it is and all share one."""
    stripped = state
    while stripped and not any(k in names for k in stripped):
        prefix = next(iter(stripped)).split(".", 1)[0] + "."
        if not all(k.startswith(prefix) and len(k) > len(prefix) for k in stripped):
            return state  # as it was, so that an error names the file's own keys
        stripped = {k[len(prefix):]: v for k, v in stripped.items()}
    return stripped


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True, allow_pickle: bool = False,
                 state: dict[str, torch.Tensor] | None = None) -> None:
    """Load safetensors weights into ``model``, with one-line errors for missing/extra/misshapen tensors.

    ``allow_pickle``: also accept a legacy torch.save file, read by `load_pickled_tensors` (never plain unpickling).
    ``state``: the file's tensors when the caller has read them already (``path`` then only names it in errors).
    """
    own = model.state_dict()
    state = without_wrapper_prefix(read_weights(path, allow_pickle) if state is None else state, own)
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong:
        raise PelaError(f"{path} does not fit this architecture: shape mismatch for {len(wrong)} tensors, e.g. {wrong[0]}")
    result = model.load_state_dict(state, strict=False)
    # tied weights are stored once by safetensors; a key missing only because it is tied is fine
    params = dict(model.named_parameters(remove_duplicate=False))
    stored = {id(params[k]) for k in state if k in params}
    missing = [k for k in result.missing_keys if k not in params or id(params[k]) not in stored]
    if strict and (missing or result.unexpected_keys):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[0]})")
        raise PelaError(f"{path} does not fit this architecture: {', '.join(parts)} tensors")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PelaError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PelaError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise PelaError(f"{path} must hold a JSON object")
    return data


# ---------------------------------------------------------------- structure
def factorized_layers(model: nn.Module) -> dict[str, dict[str, Any]]:
    return {
        name: {"rank": m.rank, "in_features": m.in_features, "out_features": m.out_features, "bias": m.b.bias is not None}
        for name, m in model.named_modules()
        if isinstance(m, LowRankLinear)
    }


def apply_structure(model: nn.Module, layers: dict[str, dict[str, Any]]) -> None:
    """Swap the named linear layers of a freshly built ``model`` for empty `LowRankLinear` of the saved ranks."""
    from pela.arch.core import linear_weight

    modules = dict(model.named_modules())
    for name, spec in layers.items():
        old = modules.get(name)
        wb = None if old is None else linear_weight(old)
        if wb is None:
            raise PelaError(f"saved model factorizes layer {name!r}, which this architecture does not have as a linear layer")
        out_f, in_f = wb[0].shape
        if (in_f, out_f) != (spec["in_features"], spec["out_features"]):
            raise PelaError(f"layer {name!r} is {in_f}->{out_f} here but {spec['in_features']}->{spec['out_features']} in the saved model")
        new = LowRankLinear(in_f, out_f, int(spec["rank"]), bias=bool(spec["bias"]), device=wb[0].device, dtype=wb[0].dtype)
        parent_name, _, attr = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, attr, new)


def _rebuilds(model: nn.Module, source: dict[str, Any]) -> bool:
    """Whether ``source`` rebuilds exactly ``model``'s parameter and buffer shapes.

    Built on the meta device (no memory, no init); on the CPU for an architecture whose constructor
    needs real numbers (``.item()`` on a tensor, say).
    """
    from pela.models.sources import build_architecture

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
    """``dtype`` (a name or a torch dtype) checked as a dtype to write weights in; None keeps the model's."""
    if dtype is None:
        return None
    found = SAVE_DTYPES.get(dtype) if isinstance(dtype, str) else dtype if dtype in SAVE_DTYPES.values() else None
    if found is None:
        raise PelaError(f"weights can be saved in {', '.join(SAVE_DTYPES)}, not {dtype!r}")
    return found


@contextlib.contextmanager
def _floats_as(model: nn.Module, dtype: torch.dtype | None) -> Iterator[None]:
    """Hold the model's floating-point tensors in ``dtype`` while it is written, then give back the originals.

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
def _write_model(model: nn.Module, target: Path, extra: dict[str, Any] | None, dtype: torch.dtype | None = None) -> None:
    from safetensors.torch import save_model

    from pela.models.sources import source_of

    from pela.layers.lowrank import SequenceClassifier

    backbone = model.backbone if isinstance(model, SequenceClassifier) else model
    source = source_of(backbone)
    if source and source.get("kind") == "timm" and not _rebuilds(backbone, source):
        warnings.warn(f"timm:{source.get('name')} as recorded does not rebuild this model's shapes (it was built with arguments "
                      "pela did not see); the weights are saved, and pela.load needs the dense model: pela.load(dir, model=...). "
                      "Models made by pela.load_model('timm:NAME', **kwargs) record their arguments.", stacklevel=3)
        source = None
    head = ({"hidden": model.hidden, "num_classes": model.num_classes, "pooling": model.pooling,
             "hidden_states": model.hidden_states, "tower": model.tower} if isinstance(model, SequenceClassifier) else None)
    meta = {"format": "pela", "version": FORMAT_VERSION, "source": source, "head": head,
            "classes": getattr(model, "pela_classes", None), "factorized": factorized_layers(model), **(extra or {})}
    with _floats_as(model, dtype):
        save_model(model, str(target / WEIGHTS_NAME))
    if source and source.get("kind") == "hf":
        backbone.config.to_json_file(str(target / "config.json"))
        files_from = getattr(backbone, "pela_files", None)
        for name in COMPANION_FILES if files_from else ():
            if (Path(files_from) / name).is_file():
                shutil.copy(Path(files_from) / name, target / name)
        if source.get("remote_code") and files_from:  # the architecture's own code, for pela.load to build it
            for code in Path(files_from).glob("*.py"):
                shutil.copy(code, target / code.name)
    (target / CONFIG_NAME).write_text(json.dumps(meta, indent=2))


def save_pretrained(model: nn.Module, directory: str | os.PathLike, *, overwrite: bool = False, extra: dict[str, Any] | None = None,
                    dtype: str | torch.dtype | None = None) -> Path:
    """Write ``model`` to ``directory`` (atomically): safetensors weights plus JSON metadata.

    The architecture is rebuilt on `load` from the source recorded by `pela.load_model` (a timm
    name or a Hugging Face config); for any other model pass the fresh architecture to `load`.
    ``dtype`` (``"bfloat16"``, ``"float16"``, ``"float32"``) writes the floating-point weights in that
    dtype, halving the file for shipping, and leaves ``model`` as it was; None writes them as they are.

    >>> import torch.nn as nn, pela, tempfile
    >>> d = pela.save_pretrained(nn.Linear(4, 4), tempfile.mkdtemp() + "/m")
    """
    dt = save_dtype(dtype)
    with atomic_dir(directory, overwrite) as tmp:
        _write_model(model, tmp, extra, dt)
    return Path(directory)


def save_into(model: nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None,
              dtype: str | torch.dtype | None = None) -> Path:
    """Write the model files into an existing run directory (beside its logs), each file atomically.

    ``pela.json`` is moved in last: until it is there, the directory is not a loadable model.
    """
    path, dt = Path(directory), save_dtype(dtype)
    tmp = Path(tempfile.mkdtemp(prefix=".model.tmp-", dir=path))
    try:
        _write_model(model, tmp, extra, dt)
        _default_permissions(tmp)
        (path / CONFIG_NAME).unlink(missing_ok=True)
        for f in sorted(tmp.iterdir(), key=lambda f: f.name == CONFIG_NAME):
            os.replace(f, path / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def stored_float_dtype(path: Path) -> torch.dtype | None:
    """The one floating dtype of a safetensors file's tensors; None if it mixes several (or is unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(check_safetensors(path)), framework="pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    except PelaError:
        return None  # load_weights says what is wrong with the file
    names = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
    floats = {names[d] for d in dtypes if d in names}
    return floats.pop() if len(floats) == 1 else None


def is_pela_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_NAME).is_file()


def load(directory: str | os.PathLike, model: nn.Module | None = None, *, trust_remote_code: bool = False) -> nn.Module:
    """Rebuild a model saved by `save_pretrained` (in eval mode); outputs are bitwise those saved.

    Args:
        directory: a directory written by `save_pretrained`.
        model: the freshly built dense architecture, needed only when the saved model's source
            was not recorded (a model that did not come from `pela.load_model`).
        trust_remote_code: needed for a model whose architecture is code it brought along (see
            `pela.load_model`); that code was copied beside the weights and runs again here.
    """
    from pela.models.sources import build_architecture

    path = Path(directory)
    if not path.is_dir():
        raise PelaError(f"{path} is not a directory")
    meta = read_json(path / CONFIG_NAME)
    if meta.get("format") != "pela" or not isinstance(meta.get("factorized"), dict):
        raise PelaError(f"{path / CONFIG_NAME} is not a pela model description")
    if meta.get("version", 0) > FORMAT_VERSION:
        raise PelaError(f"{path} was written by a newer pela (format {meta['version']}); upgrade pela")
    if model is None:
        if not meta.get("source"):
            raise PelaError(f"{path} does not record its architecture; pass the dense model: pela.load(dir, model=...)")
        model = build_architecture(meta["source"], path, trust_remote_code)
        model.pela_source = meta["source"]
        if meta.get("head"):
            from pela.layers.lowrank import SequenceClassifier

            model = SequenceClassifier(model, **meta["head"])
    apply_structure(model, meta["factorized"])
    stored = stored_float_dtype(path / WEIGHTS_NAME)
    if stored is not None:  # a model saved in bfloat16 comes back in bfloat16, bit for bit
        model.to(stored)
    load_weights(model, path / WEIGHTS_NAME)
    if meta.get("source"):
        getattr(model, "backbone", model).pela_source = meta["source"]
    if meta.get("classes"):
        model.pela_classes = list(meta["classes"])
    if (path / "config.json").is_file():
        model.pela_files = str(path)
        getattr(model, "backbone", model).pela_files = str(path)
    return model.eval()
