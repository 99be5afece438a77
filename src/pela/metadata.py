"""What pela remembers about a model it loaded or trained, in one object: `ModelInfo`, read with
`info`.

A model from `pela.load` knows where it came from (``source``, what `pela.save_pretrained` records
so that `pela.load` can rebuild its architecture without pickles), the directory whose tokenizer and
config files travel with it (``files``), the names of the classes pela fine-tuned it on
(``classes``), and the precision its weights came in when that was half (``weights_dtype``), how
it pools its tokens when it says (``pooling``: a sentence-transformers model's own), and whether
its linear layers hold int8 weights (``int8``). A
classification head pela added around a backbone (`pela.arch.SequenceClassifier`) has its own
record; the backbone keeps its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_ATTRIBUTE = "pela_info"


@dataclass
class ModelInfo:
    # how to rebuild the architecture: {"kind": "timm" | "hf", ...}
    source: dict[str, Any] | None = None
    # the directory holding the model's config and tokenizer or image processor files
    files: str | None = None
    classes: list[str] | None = None  # the classes of the head pela fine-tuned, in output order
    # "float16" or "bfloat16" when the weights came in half precision
    weights_dtype: str | None = None
    # how the model pools its tokens (a sentence-transformers model's), for a head pela adds
    pooling: str | None = None
    # "dynamic" or "weight" once `pela.quantize_int8` gave its linear layers int8 weights
    int8: str | None = None


def info(model: Any) -> ModelInfo:
    """pela's record of ``model``, attached to it on first use; an empty one for anything that is no
    model."""
    found = getattr(model, _ATTRIBUTE, None)
    if isinstance(found, ModelInfo):
        return found
    record = ModelInfo()
    if model is not None and hasattr(model, "__dict__"):
        setattr(model, _ATTRIBUTE, record)
    return record
