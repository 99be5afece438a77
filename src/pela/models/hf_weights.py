"""Which transformers class a checkpoint's weights describe, and saying so when some are missing.

Checkpoints often keep the config of the model they started from: a sentence-transformers encoder
saved from ``BertModel`` whose config still names ``BertForMaskedLM``. Built as the config says, the
model would get a randomly initialized language-model head that nothing uses, and lose the pooler
the file holds. pela builds what the weights describe: the base model when the file holds none of
the head's own tensors (a head tied to the embeddings has none, and is kept), and says in one line
when any tensor of the model it builds is not in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pela.errors import warn


def stored_names(shards: list[Path]) -> set[str]:
    """The tensor names of safetensors files, read from their headers."""
    from safetensors import safe_open

    names: set[str] = set()
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            names.update(f.keys())
    return names


def class_for_weights(cls: type, config: Any, stored: set[str]) -> type:
    """``cls``, or the class of its base model when ``stored`` holds none of the tensors of
    ``cls``'s own head."""
    try:
        with torch.device("meta"):
            named = cls._from_config(config)
    except Exception:  # noqa: BLE001 - a class that cannot be built bare: as the config says
        return cls
    base = getattr(named, "base_model", named)
    if base is named or not stored:
        return cls
    prefix = f"{named.base_model_prefix}."
    # parameters tied to the base model's (an LM head sharing the embeddings) are listed once, under
    # the base's name
    head = [name for name, _ in named.named_parameters() if not name.startswith(prefix)]
    if not head or any(name in stored for name in head):
        return cls
    return type(base)


def warn_missing(path: Path, model: Any, loading_info: dict[str, Any]) -> None:
    """One line when the model has tensors the checkpoint lacks: transformers initialized them at
    random."""
    missing = sorted(loading_info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        warn(
            f"{path} has no weights for {len(missing)} tensor{'s' if len(missing) != 1 else ''} of "
            f"{type(model).__name__} ({shown}): they are initialized at random"
        )
