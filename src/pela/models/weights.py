"""Reading weights safely: safetensors checked before reading, legacy pickles only through
``torch.load(weights_only=True)`` and only when asked, names fitted to the model.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pela.errors import PelaError


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
    return head[:4] == b"PK\x03\x04" or (
        head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    )


def check_safetensors(path: str | os.PathLike) -> Path:
    """Raise `PelaError` unless ``path`` is a well-formed safetensors file (header checked, nothing
    run)."""
    path = Path(path)
    if not path.is_file():
        raise PelaError(f"weights file {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    if is_pickle(path):
        raise PelaError(
            f"{path} is a pickle/zip archive (torch.save format), not safetensors; pela never "
            "unpickles files it did not write (to read its tensors anyway with "
            "torch.load(weights_only=True), pass allow_pickle=true)"
        )
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
        raise PelaError(f"{path} is not a valid safetensors file: {str(e).splitlines()[0]}") from e
    return path


def load_pickled_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a legacy torch.save file, read with ``torch.load(weights_only=True)``: its
    restricted unpickler builds tensors and plain containers only and refuses anything that would
    run code."""
    path = Path(path)
    if not path.is_file():
        raise PelaError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    # UnpicklingError for forbidden globals, RuntimeError for broken archives
    except Exception as e:
        raise PelaError(
            f"{path} cannot be read safely with torch.load(weights_only=True): "
            f"{str(e).splitlines()[0][:200]}"
        ) from e
    for key in ("state_dict", "model", "model_state_dict"):  # common wrappers of training scripts
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())
    ):
        raise PelaError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return obj


def read_weights(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (checked first), or with ``allow_pickle`` of a legacy
    torch.save file."""
    from safetensors.torch import load_file

    path = Path(path)
    if allow_pickle and path.is_file() and is_pickle(path):
        return load_pickled_tensors(path)
    return load_file(check_safetensors(path))


def without_wrapper_prefix(state: dict[str, torch.Tensor], names: Any) -> dict[str, torch.Tensor]:
    """``state`` with the prefix a training wrapper put on every name (DDP's ``module.``,
    Lightning's
    ``model.``, ``torch.compile``'s ``_orig_mod.``) taken off, where no name fits the model's
    ``names`` as it is and all share one."""
    stripped = state
    while stripped and not any(k in names for k in stripped):
        prefix = next(iter(stripped)).split(".", 1)[0] + "."
        if not all(k.startswith(prefix) and len(k) > len(prefix) for k in stripped):
            return state  # as it was, so that an error names the file's own keys
        stripped = {k[len(prefix) :]: v for k, v in stripped.items()}
    return stripped


def load_weights(
    model: nn.Module,
    path: str | os.PathLike,
    strict: bool = True,
    allow_pickle: bool = False,
    state: dict[str, torch.Tensor] | None = None,
    assign: bool = False,
) -> None:
    """Load safetensors weights into ``model``, with one-line errors for missing/extra/misshapen
    tensors.

    ``allow_pickle``: also accept a legacy torch.save file, read by `load_pickled_tensors` (never
    plain unpickling).
    ``state``: the file's tensors when the caller has read them already (``path`` then only names it
    in errors). ``assign``: the tensors become the model's parameters instead of being copied into
    them (int8 tensors, whose copy torchao does not always allow).
    """
    own = model.state_dict()
    state = without_wrapper_prefix(
        read_weights(path, allow_pickle) if state is None else state, own
    )
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if wrong:
        raise PelaError(
            f"{path} does not fit this architecture: shape mismatch for {len(wrong)} tensors, e.g. "
            f"{wrong[0]}"
        )
    result = model.load_state_dict(state, strict=False, assign=assign)
    # tied weights are stored once by safetensors; a key missing only because it is tied is fine
    params = dict(model.named_parameters(remove_duplicate=False))
    stored = {id(params[k]) for k in state if k in params}
    missing = [k for k in result.missing_keys if k not in params or id(params[k]) not in stored]
    if strict and (missing or result.unexpected_keys):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if result.unexpected_keys:
            parts.append(
                f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[0]})"
            )
        raise PelaError(f"{path} does not fit this architecture: {', '.join(parts)} tensors")


def stored_float_dtype(path: Path) -> torch.dtype | None:
    """The one floating dtype of a safetensors file's tensors; None if it mixes several (or is
    unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(check_safetensors(path)), framework="pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    except PelaError:
        return None  # load_weights says what is wrong with the file
    names = {
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "F32": torch.float32,
        "F64": torch.float64,
    }
    floats = {names[d] for d in dtypes if d in names}
    return floats.pop() if len(floats) == 1 else None
