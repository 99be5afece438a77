"""A GGUF file (llama.cpp's format) as a model source: dequantized once into a Hugging Face
directory.

transformers reads GGUF files (the ``gguf`` package must be installed) and dequantizes them to
float32. Doing that on every load takes tens of seconds for a 135M model, and a model built straight
from a GGUF file has no directory that its tokenizer and config live in (which
`pela.save_pretrained`, `pela export` and the data collator need). So the first load writes an
ordinary Hugging Face directory (config, safetensors, tokenizer) into a cache, atomically, and every
load reads that. The weights keep the quantization error of the file: a Q4 file gives a slightly
worse model than the original float weights, which a warning says once per conversion.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from pela.errors import PelaError, warn
from pela.utils.files import atomic_dir, cache_dir


def converted_dir(path: Path) -> Path:
    """The Hugging Face directory a GGUF file is dequantized into: one per file content (name, size,
    mtime)."""
    stat = path.stat()
    key = hashlib.sha256(
        f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    ).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{path.stem}-{key}"


def gguf_to_hf(path: Path) -> Path:
    """The directory holding ``path`` as a Hugging Face model, converting it the first time."""
    target = converted_dir(path)
    if (target / "config.json").is_file():
        return target
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise PelaError(f"reading {path.name} needs the gguf package: pip install gguf") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        )
    # an architecture or quantization transformers cannot read
    except (ValueError, KeyError, OSError) as e:
        raise PelaError(f"transformers cannot read {path}: {str(e).splitlines()[0]}") from None
    # the weights are plain float32 tensors by now; transformers still marks the model "quantized
    # with gguf"
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(target, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    warn(
        f"{path.name} was dequantized to float32 into {target}; its weights keep the file's "
        "quantization error"
    )
    return target
