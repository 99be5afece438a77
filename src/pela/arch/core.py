"""Everything pela knows about particular architectures, in one place a user can extend.

* `DEFAULT_EXCLUDE`: name patterns of layers left dense by default (PELA's exclusions), each
  with the reason shown in the report. Add your own with `add_default_exclusion`.
* `LINEAR_LIKE`: module types that compute ``x @ Wᵀ + b`` and how to read ``W`` (out × in) from
  them; GPT-2's transposed `Conv1D` is registered here. Add types with `register_linear_like`.
* `structural_skip`: layers whose weight the parent reads directly, so swapping them would break
  the model (`nn.MultiheadAttention.out_proj`).
* `example_inputs`: dummy inputs shaped for a model, for benchmarks and smoke tests.
* `with_decoder_inputs`: an encoder-decoder model (T5) fed text alone gets that text, shifted, as
  its decoder's input, so distillation and fine-tuning run on plain text.
* `TOWERS`: the towers of a two-tower model (CLIP, SigLIP), each with the input it reads, so that such a
  model given images alone (or text alone) runs, distills and classifies with that tower.

The core (`pela.factorize`) calls only these functions and has no per-architecture branches.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any, Callable, Collection

import torch
from torch import nn

from pela.errors import PelaError

# pattern (re.search on the module's qualified name) -> reason shown in the report
DEFAULT_EXCLUDE: dict[str, str] = {
    r"norm": "normalization layer",
    r"(^|[._])(head|heads|lm_head|classifier|cls|fc_norm|pre_logits)($|[._])": "classification head",
    r"patch_embed|patch_embedding|embeddings\.patch": "patch embedding",
    r"downsample|patch_merging": "downsampling (Swin patch merging)",
    r"(^|\.)(visual_projection|text_projection|vision_proj|text_proj)$": "projection head",
}


def add_default_exclusion(pattern: str, reason: str) -> None:
    """Leave layers matching ``pattern`` dense by default, with ``reason`` in the report."""
    re.compile(pattern)
    DEFAULT_EXCLUDE[pattern] = reason


# module type -> function returning (weight as out × in, bias or None)
LINEAR_LIKE: dict[type, Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor | None]]] = {
    nn.Linear: lambda m: (m.weight, m.bias),
}


def register_linear_like(cls: type, get_weight: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    """Teach pela a module type that acts as a linear layer on the last dimension."""
    LINEAR_LIKE[cls] = get_weight


try:  # GPT-2 style Conv1D stores W transposed (in × out) and computes x @ W + b
    from transformers.pytorch_utils import Conv1D

    register_linear_like(Conv1D, lambda m: (m.weight.t(), m.bias))
except ImportError:  # transformers is optional for pure-PyTorch models
    pass


def linear_weight(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """``(W, bias)`` with W as out × in if ``module`` is linear-like (exact type match), else None."""
    get = LINEAR_LIKE.get(type(module))
    if get is None:  # subclasses of nn.Linear (e.g. NonDynamicallyQuantizableLinear) count too
        get = next((g for t, g in LINEAR_LIKE.items() if isinstance(module, t)), None)
    return None if get is None else get(module)


def structural_skip(name: str, module: nn.Module, parent: nn.Module | None) -> str | None:
    """A reason to keep ``module`` dense no matter what the patterns say, or None."""
    if isinstance(parent, nn.MultiheadAttention) and name.rsplit(".", 1)[-1] == "out_proj":
        return "read directly by nn.MultiheadAttention"
    return None


def default_exclusion_reason(name: str) -> str | None:
    for pattern, reason in DEFAULT_EXCLUDE.items():
        if re.search(pattern, name):
            return reason
    return None


def example_inputs(model: nn.Module, batch_size: int, seq_len: int = 128, device: Any = "cpu") -> dict[str, torch.Tensor] | tuple:
    """Random inputs shaped for ``model``: a tuple of positional args or a dict of keyword args.

    Understands timm models (``pretrained_cfg["input_size"]``) and Hugging Face models (text via
    ``vocab_size``, images via ``image_size``/``num_channels``, two-tower models via their
    ``text_config``/``vision_config``).
    """
    g = torch.Generator().manual_seed(0)
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and "input_size" in cfg:
        channels, *size = cfg["input_size"]
        size = built_image_size(model) or size
        return (torch.randn(batch_size, channels, *size, generator=g).to(device),)
    hf = getattr(model, "config", None)
    backbone = getattr(model, "backbone", None)
    if hf is None and isinstance(backbone, nn.Module):  # a classifier pela added (SequenceClassifier): its backbone's inputs
        inputs = example_inputs(backbone, batch_size, seq_len, device)
        tower = getattr(model, "tower", None)
        if tower and isinstance(inputs, dict):  # the tower it classifies with reads one kind of input
            kind = TOWERS[tower][0]
            inputs = {k: v for k, v in inputs.items() if k == kind or (k == "attention_mask" and kind == "input_ids")}
        return inputs
    if hf is None or not hasattr(hf, "to_dict"):
        raise PelaError(f"cannot tell what inputs a {type(model).__name__} takes; pass inputs explicitly")
    text_cfg = getattr(hf, "text_config", None) or hf
    vision_cfg = getattr(hf, "vision_config", None) or hf
    inputs: dict[str, torch.Tensor] = {}
    names = {getattr(model, "main_input_name", "input_ids")}
    if getattr(hf, "text_config", None) is not None and getattr(hf, "vision_config", None) is not None:
        names = {"input_ids", "pixel_values"}
    if "input_ids" in names:
        length = min(seq_len, _positive(getattr(text_cfg, "max_position_embeddings", None)) or seq_len)
        inputs["input_ids"] = torch.randint(0, text_cfg.vocab_size, (batch_size, length), generator=g).to(device)
        inputs["attention_mask"] = torch.ones(batch_size, length, dtype=torch.long).to(device)
    if "pixel_values" in names:
        size = getattr(vision_cfg, "image_size", 224)
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        channels = getattr(vision_cfg, "num_channels", 3)
        inputs["pixel_values"] = torch.randn(batch_size, channels, *size, generator=g).to(device)
    if not inputs:
        raise PelaError(f"cannot make example inputs for main input {sorted(names)} of {type(model).__name__}")
    return with_decoder_inputs(model, inputs)


def built_image_size(model: nn.Module) -> tuple[int, ...] | None:
    """The image size a timm model was built for with ``img_size=...`` (its ``pretrained_cfg`` keeps the
    pretrained one): its patch embedding's, be it called ``patch_embed`` or ``stem``, else the
    ``img_size`` recorded by `pela.load_model`; None if neither says."""
    for m in model.modules():
        if isinstance(getattr(m, "img_size", None), (tuple, list)):
            return tuple(m.img_size)
    recorded = (getattr(model, "pela_source", None) or {}).get("kwargs", {}).get("img_size")
    if isinstance(recorded, int):
        return (recorded, recorded)
    return tuple(recorded) if isinstance(recorded, (tuple, list)) else None


def _positive(value: Any) -> int | None:
    """A config's length limit, if it states one (XLNet's is -1: no limit)."""
    return value if isinstance(value, int) and value > 0 else None


@functools.lru_cache(maxsize=None)
def _takes_decoder_inputs(cls: type) -> bool:
    """Whether ``cls.forward`` takes ``decoder_input_ids`` (asked once per class, not every batch)."""
    return "decoder_input_ids" in inspect.signature(cls.forward).parameters


def with_decoder_inputs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``inputs`` plus decoder inputs for a Hugging Face encoder-decoder model that needs them.

    The decoder reads the encoder's text shifted right by one behind the decoder start token (what
    BART does by itself, and what T5 does with ``labels``), so both halves of the model run on it.
    Inputs that already name decoder inputs, and other models, are returned as they are.
    """
    cfg = getattr(model, "config", None)
    ids = inputs.get("input_ids")
    if not getattr(cfg, "is_encoder_decoder", False) or ids is None or ids.dim() != 2 or any(k.startswith("decoder_") for k in inputs):
        return inputs
    if not _takes_decoder_inputs(type(model)):
        return inputs
    generation = getattr(model, "generation_config", None)
    candidates = (getattr(cfg, "decoder_start_token_id", None), getattr(generation, "decoder_start_token_id", None),
                  getattr(cfg, "pad_token_id", None))
    start = next((t for t in candidates if isinstance(t, int)), 0)
    out = {**inputs, "decoder_input_ids": torch.cat([torch.full_like(ids[:, :1], start), ids[:, :-1]], dim=1)}
    mask = inputs.get("attention_mask")
    if mask is not None:
        out["decoder_attention_mask"] = torch.cat([torch.ones_like(mask[:, :1]), mask[:, :-1]], dim=1)
    return out


def block_masks(model: nn.Module, blocks: list[str], inputs: dict[str, torch.Tensor]) -> list[torch.Tensor | None]:
    """The attention mask over each named block's tokens: an encoder-decoder's decoder blocks read the
    decoder's tokens (`with_decoder_inputs`), whose mask is the encoder's shifted by one."""
    mask = inputs.get("attention_mask")
    get_decoder = getattr(model, "get_decoder", None)
    if not getattr(getattr(model, "config", None), "is_encoder_decoder", False) or get_decoder is None:
        return [mask] * len(blocks)
    decoder = get_decoder()
    prefix = next((f"{name}." for name, m in model.named_modules() if m is decoder), None)
    decoder_mask = with_decoder_inputs(model, inputs).get("decoder_attention_mask", mask)
    return [decoder_mask if prefix and b.startswith(prefix) else mask for b in blocks]


def _count_linear(module: nn.Module) -> int:
    return sum(linear_weight(m) is not None for m in module.modules())


def find_blocks(model: nn.Module, pattern: str | None = None) -> list[str]:
    """Names of the Transformer blocks of ``model``, whose outputs feature distillation matches.

    Without ``pattern``: the children of every innermost `nn.ModuleList`/`nn.Sequential` whose
    children are all of one class holding at least two linear layers. That finds timm ``blocks``,
    Swin's ``layers.i.blocks`` inside stages, HF ``encoder.layer(s)``, and each tower of CLIP.
    With ``pattern``: every module whose name matches it (``re.search``).
    """
    if pattern is not None:
        try:
            names = [n for n, _ in model.named_modules() if n and re.search(pattern, n)]
        except re.error as e:
            raise PelaError(f"blocks pattern {pattern!r} is not a valid regular expression: {e}") from None
        if not names:
            raise PelaError(f"blocks pattern {pattern!r} matches no module")
        return names
    lists = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.ModuleList, nn.Sequential)):
            kids = list(m.children())
            if kids and len({type(k) for k in kids}) == 1 and linear_weight(kids[0]) is None and _count_linear(kids[0]) >= 2:
                lists.append(name)
    inner = [c for c in lists if not any(o != c and o.startswith(c + "." if c else "") for o in lists)]
    return [f"{c}.{k}" if c else k for c in inner for k, _ in model.get_submodule(c).named_children()]


# a two-tower model (CLIP, SigLIP) given one kind of input runs, trains and classifies with the tower that
# reads it: tower submodule -> (the input it reads, the attribute of the model's config that configures it)
TOWERS: dict[str, tuple[str, str]] = {"vision_model": ("pixel_values", "vision_config"), "text_model": ("input_ids", "text_config")}


def two_tower(model: nn.Module) -> bool:
    """True for a Hugging Face model with one tower per kind of input in `TOWERS` (CLIP, SigLIP)."""
    cfg = getattr(model, "config", None)
    return all(getattr(cfg, c, None) is not None and isinstance(getattr(model, t, None), nn.Module) for t, (_, c) in TOWERS.items())


def tower_for(model: nn.Module, inputs: Collection[str]) -> str | None:
    """The tower of a two-tower model that ``inputs`` alone feed, e.g. ``vision_model`` for CLIP given
    only ``pixel_values``; None for any other model, or for inputs of both kinds."""
    fed = [t for t, (kind, _) in TOWERS.items() if kind in inputs]
    return fed[0] if len(fed) == 1 and two_tower(model) else None


def data_tower(model: nn.Module, data: Any, collate_fn: Callable) -> str | None:
    """`tower_for` the inputs a batch of ``data`` holds (one example is collated to see them); None
    without collating anything for a model that is not two-tower."""
    if not two_tower(model) or not len(data):
        return None
    return tower_for(model, set(collate_fn([data[0]])) - {"labels"})


def _tower_hidden_size(model: nn.Module, tower: str) -> int | None:
    cfg = getattr(model.get_submodule(tower), "config", None) or getattr(model.config, TOWERS[tower][1])
    return getattr(cfg, "hidden_size", None)


class TowerView(nn.Module):
    """One tower of a two-tower model as a model of its own, for training it on inputs of one kind.

    Only the tower is a submodule, so an optimizer (and DistributedDataParallel) built on the view
    sees the tower's parameters, which are the full model's own, and nothing of the other tower.
    """

    def __init__(self, model: nn.Module, tower: str):
        super().__init__()
        self.tower = model.get_submodule(tower)

    def forward(self, *args, **kwargs) -> Any:
        return self.tower(*args, **kwargs)


def forward(model: nn.Module, inputs: dict[str, torch.Tensor]) -> Any:
    """Call ``model`` on a batch dict: keyword arguments for Hugging Face models, the tensor for others.

    A two-tower model given inputs of one kind runs the tower that reads them (see `TowerView` for
    training one under DistributedDataParallel).
    """
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the real model
    try:
        import transformers

        if isinstance(inner, transformers.PreTrainedModel):
            tower = tower_for(inner, inputs) if model is inner else None
            if tower:
                return inner.get_submodule(tower)(**inputs)
            return call_with_inputs(model, inner, with_decoder_inputs(inner, inputs))
        from pela.layers.lowrank import SequenceClassifier

        if isinstance(inner, SequenceClassifier) and isinstance(inner.backbone, transformers.PreTrainedModel):
            return model(**inputs)  # by name: a lone tensor passed by position may land on another parameter
    except ImportError:
        pass
    if len(inputs) == 1:
        return model(next(iter(inputs.values())))
    return model(**inputs)


def call_with_inputs(model: nn.Module, inner: nn.Module, inputs: dict[str, Any], **extra: Any) -> Any:
    """``model(**inputs, **extra)``; a model that needs inputs the data does not give (BLIP's image-text
    matching on images alone, say) says which, instead of Python's bare complaint about its ``forward``."""
    try:
        return model(**inputs, **extra)
    except TypeError as e:
        missing = re.match(rf"{type(inner).__name__}\.forward\(\) missing \d+ required (?:positional |keyword-only )?"
                           r"arguments?: (.+)$", str(e))
        if missing is None:
            raise
        raise PelaError(f"{type(inner).__name__} needs {missing.group(1)} too, and the data gives only {', '.join(inputs)}: "
                        "it reads inputs of several kinds together") from None


def main_output(output: Any) -> torch.Tensor:
    """The tensor that stands for a model's prediction: logits if there are any, else hidden states."""
    if torch.is_tensor(output):
        return output
    for attr in ("logits", "logits_per_image", "last_hidden_state"):
        value = getattr(output, attr, None)
        if torch.is_tensor(value):
            return value
    if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
        return output[0]
    raise PelaError(f"cannot find a tensor in the model output ({type(output).__name__})")


def block_output(output: Any) -> torch.Tensor:
    """The hidden states a block returns (blocks return a tensor, a tuple, or a ModelOutput)."""
    if torch.is_tensor(output):
        return output
    if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
        return output[0]
    if hasattr(output, "values"):
        return next(v for v in output.values() if torch.is_tensor(v))
    raise PelaError(f"cannot read hidden states from a block output of type {type(output).__name__}")


def output_tensors(output: Any) -> list[torch.Tensor]:
    """Every tensor in a model output (a tensor, a tuple/list, or a dict-like ModelOutput), nested."""
    if torch.is_tensor(output):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for o in output for t in output_tensors(o)]
    if hasattr(output, "values"):
        return [t for o in output.values() for t in output_tensors(o)]
    return []


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
    Hugging Face config's ``id2label`` (not the placeholder LABEL_0, ...), timm's ``label_names``."""
    names = getattr(model, "pela_classes", None)
    if names:
        return [str(c) for c in names]
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if isinstance(id2label, dict) and id2label:
        labels = [str(id2label[i]) for i in sorted(id2label, key=int)]
        if labels != [f"LABEL_{i}" for i in range(len(labels))]:
            return labels
    names = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    # a timm head reset to another size (a fine-tuned checkpoint) no longer has its weights' class names
    if isinstance(names, (list, tuple)) and names and len(names) == getattr(model, "num_classes", len(names)):
        return [str(c) for c in names]
    return None


def max_positions(model: nn.Module) -> int | None:
    """The most tokens a text model accepts (its position table), if its config says; wrappers are looked through."""
    for m in (model, getattr(model, "backbone", None), getattr(model, "module", None)):
        cfg = getattr(m, "config", None)
        for c in (cfg, getattr(cfg, "text_config", None)):
            for attr in ("max_position_embeddings", "n_positions", "max_seq_len"):
                if _positive(getattr(c, attr, None)):
                    return getattr(c, attr)
    return None


def with_classifier(model: nn.Module, num_classes: int, pooling: str = "mean", tower: str | None = None) -> nn.Module:
    """``model`` with a classification head of ``num_classes`` outputs.

    timm models get ``reset_classifier`` (their own head). Hugging Face ``*ForSequenceClassification``
    and ``*ForImageClassification`` models keep their head, with its last layer replaced when it has
    another number of labels. Any other model is wrapped in `pela.layers.SequenceClassifier` (pooled
    hidden states → linear head); a Hugging Face model with a head of another kind (masked or causal
    language modelling, say) is pooled from its last hidden states, not from that head's output.
    ``tower`` (see `data_tower`) pools one tower of a two-tower model: CLIP fine-tuned on labelled
    images classifies with its ``vision_model``.
    """
    from pela.layers.lowrank import SequenceClassifier

    if isinstance(model, SequenceClassifier):
        if model.num_classes != num_classes:
            raise PelaError(f"model has a {model.num_classes}-class head but the data has {num_classes} classes")
        return model
    if hasattr(model, "reset_classifier") and hasattr(model, "num_classes"):  # timm
        if model.num_classes != num_classes:
            model.reset_classifier(num_classes)
            source = dict(getattr(model, "pela_source", None) or {})
            if source.get("kind") == "timm":
                model.pela_source = {**source, "kwargs": {**source.get("kwargs", {}), "num_classes": num_classes}}
        return model
    name = type(model).__name__
    if name.endswith(("ForSequenceClassification", "ForImageClassification")):
        if getattr(model.config, "num_labels", None) == num_classes or _resize_hf_head(model, num_classes):
            return model
    hidden = _tower_hidden_size(model, tower) if tower else hidden_size(model)
    if hidden is None:
        raise PelaError(f"cannot tell the hidden size of {name} to add a classification head")
    # a Hugging Face task-head model (BertForMaskedLM, GPT2LMHeadModel) has a base model other than
    # itself; T5ForConditionalGeneration, which has none, still follows the *For* naming
    task_head = hasattr(model, "base_model") and (model.base_model is not model or "For" in name)
    wrapped = SequenceClassifier(model, hidden, num_classes, pooling, hidden_states=task_head, tower=tower)
    wrapped.pela_files = getattr(model, "pela_files", None)
    return wrapped


def _resize_hf_head(model: nn.Module, num_classes: int) -> bool:
    """Replace the last layer of a Hugging Face classifier (``classifier``/``score``) by one with
    ``num_classes`` outputs, keeping the rest of the head (e.g. RoBERTa's dense layer); False if none fits."""
    labels = getattr(model.config, "num_labels", None)
    for attr in ("classifier", "score"):
        head = getattr(model, attr, None)
        if not isinstance(head, nn.Module):
            continue
        last = [(n, m) for n, m in head.named_modules() if isinstance(m, nn.Linear) and m.out_features == labels]
        if not last:
            continue
        path, old = last[-1]
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
        init = getattr(model, "_init_weights", None)
        if callable(init):
            init(new)  # the model's own initialization for a fresh head
        parent, _, leaf = f"{attr}.{path}".rstrip(".").rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new)
        model.config.num_labels = num_classes  # the saved config then rebuilds this head size
        if hasattr(model, "num_labels"):
            model.num_labels = num_classes
        return True
    return False
