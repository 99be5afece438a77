"""What a model's config says of it: hidden width, class names, the most tokens it takes, whether it
is a language model."""

from __future__ import annotations

from torch import nn

from pela.arch.inputs import positive_int
from pela.metadata import info


def hidden_size(model: nn.Module) -> int | None:
    """Width of a model's hidden states (Hugging Face config, or timm's ``num_features``); the last
    stage's for a hierarchical model whose config lists one per stage (``hidden_sizes``)."""
    cfg = getattr(model, "config", None)
    for c in (cfg, getattr(cfg, "text_config", None)):
        for attr in ("hidden_size", "d_model", "n_embd", "dim"):
            if isinstance(getattr(c, attr, None), int):
                return getattr(c, attr)
        sizes = getattr(c, "hidden_sizes", None)
        if isinstance(sizes, (list, tuple)) and sizes and isinstance(sizes[-1], int):
            return sizes[-1]
    return getattr(model, "num_features", None)


def class_names(model: nn.Module) -> list[str] | None:
    """The names of a classifier's outputs, where the model says them: a pela fine-tune's classes, a
    Hugging Face config's ``id2label`` (not the placeholder LABEL_0, ...), timm's
    ``label_names``."""
    names = info(model).classes
    if names:
        return [str(c) for c in names]
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if isinstance(id2label, dict) and id2label:
        labels = [str(id2label[i]) for i in sorted(id2label, key=int)]
        if labels != [f"LABEL_{i}" for i in range(len(labels))]:
            return labels
    names = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    # a timm head reset to another size (a fine-tuned checkpoint) no longer has its weights' class
    # names
    if (
        isinstance(names, (list, tuple))
        and names
        and len(names) == getattr(model, "num_classes", len(names))
    ):
        return [str(c) for c in names]
    return None


def max_positions(model: nn.Module) -> int | None:
    """The most tokens a text model accepts (its position table), if its config says; wrappers are
    looked through."""
    for m in (model, getattr(model, "backbone", None), getattr(model, "module", None)):
        cfg = getattr(m, "config", None)
        for c in (cfg, getattr(cfg, "text_config", None)):
            for attr in ("max_position_embeddings", "n_positions", "max_seq_len"):
                if positive_int(getattr(c, attr, None)):
                    return getattr(c, attr)
    return None


def is_causal_lm(model: nn.Module) -> bool:
    """Whether ``model`` is a Hugging Face model with a next-token head (any ``…ForCausalLM``,
    GPT-2's ``LMHeadModel``)."""
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    name = type(model).__name__
    return name in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()) or name.endswith("ForCausalLM")
