"""What a model takes: example inputs for benchmarks, an encoder-decoder's decoder inputs, each
block's mask."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn

from pela.arch.towers import TOWERS
from pela.errors import PelaError
from pela.metadata import info

# what a benchmark feeds a model unless told: 32 examples, text of 128 tokens (or the model's
# positions, if fewer)
DEFAULT_BATCH = 32
DEFAULT_SEQ_LEN = 128


def example_inputs(
    model: nn.Module, batch_size: int, seq_len: int = 128, device: Any = "cpu"
) -> dict[str, torch.Tensor] | tuple:
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
    # a classifier pela added (SequenceClassifier): its backbone's inputs
    if hf is None and isinstance(backbone, nn.Module):
        inputs = example_inputs(backbone, batch_size, seq_len, device)
        tower = getattr(model, "tower", None)
        # the tower it classifies with reads one kind of input
        if tower and isinstance(inputs, dict):
            kind = TOWERS[tower][0]
            inputs = {
                k: v
                for k, v in inputs.items()
                if k == kind or (k == "attention_mask" and kind == "input_ids")
            }
        return inputs
    if hf is None or not hasattr(hf, "to_dict"):
        raise PelaError(
            f"cannot tell what inputs a {type(model).__name__} takes; pass inputs explicitly"
        )
    text_cfg = getattr(hf, "text_config", None) or hf
    vision_cfg = getattr(hf, "vision_config", None) or hf
    inputs: dict[str, torch.Tensor] = {}
    names = {getattr(model, "main_input_name", "input_ids")}
    if (
        getattr(hf, "text_config", None) is not None
        and getattr(hf, "vision_config", None) is not None
    ):
        names = {"input_ids", "pixel_values"}
    if "input_ids" in names:
        length = min(
            seq_len, positive_int(getattr(text_cfg, "max_position_embeddings", None)) or seq_len
        )
        inputs["input_ids"] = torch.randint(
            0, text_cfg.vocab_size, (batch_size, length), generator=g
        ).to(device)
        inputs["attention_mask"] = torch.ones(batch_size, length, dtype=torch.long).to(device)
    if "pixel_values" in names:
        size = getattr(vision_cfg, "image_size", 224)
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        channels = getattr(vision_cfg, "num_channels", 3)
        inputs["pixel_values"] = torch.randn(batch_size, channels, *size, generator=g).to(device)
    if not inputs:
        raise PelaError(
            f"cannot make example inputs for main input {sorted(names)} of {type(model).__name__}"
        )
    return with_decoder_inputs(model, inputs)


def built_image_size(model: nn.Module) -> tuple[int, ...] | None:
    """The image size a timm model was built for with ``img_size=...`` (its ``pretrained_cfg`` keeps
    the pretrained one): its patch embedding's, be it called ``patch_embed`` or ``stem``, else the
    ``img_size`` recorded by `pela.load`; None if neither says."""
    for m in model.modules():
        if isinstance(getattr(m, "img_size", None), (tuple, list)):
            return tuple(m.img_size)
    recorded = (info(model).source or {}).get("kwargs", {}).get("img_size")
    if isinstance(recorded, int):
        return (recorded, recorded)
    return tuple(recorded) if isinstance(recorded, (tuple, list)) else None


def positive_int(value: Any) -> int | None:
    """A config's length limit, if it states one (XLNet's is -1: no limit)."""
    return value if isinstance(value, int) and value > 0 else None


@functools.lru_cache(maxsize=None)
def _takes_decoder_inputs(cls: type) -> bool:
    """Whether ``cls.forward`` takes ``decoder_input_ids`` (asked once per class, not every
    batch)."""
    return "decoder_input_ids" in inspect.signature(cls.forward).parameters


def with_decoder_inputs(
    model: nn.Module, inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``inputs`` plus decoder inputs for a Hugging Face encoder-decoder model that needs them.

    The decoder reads the encoder's text shifted right by one behind the decoder start token (what
    BART does by itself, and what T5 does with ``labels``), so both halves of the model run on it.
    Inputs that already name decoder inputs, and other models, are returned as they are.
    """
    cfg = getattr(model, "config", None)
    ids = inputs.get("input_ids")
    if (
        not getattr(cfg, "is_encoder_decoder", False)
        or ids is None
        or ids.dim() != 2
        or any(k.startswith("decoder_") for k in inputs)
    ):
        return inputs
    if not _takes_decoder_inputs(type(model)):
        return inputs
    generation = getattr(model, "generation_config", None)
    candidates = (
        getattr(cfg, "decoder_start_token_id", None),
        getattr(generation, "decoder_start_token_id", None),
        getattr(cfg, "pad_token_id", None),
    )
    start = next((t for t in candidates if isinstance(t, int)), 0)
    out = {
        **inputs,
        "decoder_input_ids": torch.cat([torch.full_like(ids[:, :1], start), ids[:, :-1]], dim=1),
    }
    mask = inputs.get("attention_mask")
    if mask is not None:
        out["decoder_attention_mask"] = torch.cat(
            [torch.ones_like(mask[:, :1]), mask[:, :-1]], dim=1
        )
    return out


def block_masks(
    model: nn.Module, blocks: list[str], inputs: dict[str, torch.Tensor]
) -> list[torch.Tensor | None]:
    """The attention mask over each named block's tokens: an encoder-decoder's decoder blocks read
    the decoder's tokens (`with_decoder_inputs`), whose mask is the encoder's shifted by one."""
    mask = inputs.get("attention_mask")
    get_decoder = getattr(model, "get_decoder", None)
    if (
        not getattr(getattr(model, "config", None), "is_encoder_decoder", False)
        or get_decoder is None
    ):
        return [mask] * len(blocks)
    decoder = get_decoder()
    prefix = next((f"{name}." for name, m in model.named_modules() if m is decoder), None)
    decoder_mask = with_decoder_inputs(model, inputs).get("decoder_attention_mask", mask)
    return [decoder_mask if prefix and b.startswith(prefix) else mask for b in blocks]


# ---------------------------------------------------------------- which inputs a model takes
@functools.lru_cache(maxsize=None)
def _forward_inputs(cls: type) -> frozenset[str] | None:
    """The keyword inputs a Hugging Face model's ``forward`` names; None for any other model (pela
    passes it its one input by position, see `pela.arch.forward`).

    A Hugging Face model's ``**kwargs`` carry attention settings, not inputs a tokenizer makes, so
    only the inputs it names count (Llama's forward takes ``**kwargs`` and no ``token_type_ids``).
    """
    if not _is_transformers_model(cls):
        return None
    try:
        params = inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):  # a forward Python cannot read the signature of
        return None
    return frozenset(
        n
        for n, p in params.items()
        if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def _is_transformers_model(cls: type) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    return issubclass(cls, PreTrainedModel)


def accepted_inputs(model: nn.Module) -> frozenset[str] | None:
    """The named inputs ``model`` takes (a classifier pela added: its backbone's; a two-tower model
    given one kind of input: that tower's), or None when it takes any."""
    model = getattr(model, "module", model)  # DistributedDataParallel wraps the real model
    backbone = getattr(model, "backbone", None)
    # `SequenceClassifier`
    if isinstance(backbone, nn.Module) and getattr(model, "config", None) is None:
        tower = getattr(model, "tower", None)
        return accepted_inputs(backbone.get_submodule(tower) if tower else backbone)
    inner = getattr(model, "tower", None)
    if isinstance(inner, nn.Module) and getattr(model, "config", None) is None:  # `TowerView`
        return accepted_inputs(inner)
    return _forward_inputs(type(model))


def model_inputs(model: nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
    """``inputs`` without those ``model`` does not take (a BERT tokenizer's ``token_type_ids``
    beside a Llama, say), so that a tokenizer of another family never breaks a forward pass or
    ``generate``."""
    accepted = accepted_inputs(model)
    return dict(inputs) if accepted is None else {k: v for k, v in inputs.items() if k in accepted}


def input_kinds(model: nn.Module) -> frozenset[str]:
    """What ``model`` reads: ``{"image"}``, ``{"text"}``, both (a two-tower model), or nothing
    known."""
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and "input_size" in cfg:  # a timm model
        return frozenset({"image"})
    backbone = getattr(model, "backbone", None)
    # `SequenceClassifier`
    if isinstance(backbone, nn.Module) and getattr(model, "config", None) is None:
        tower = getattr(model, "tower", None)
        if tower in TOWERS:
            return frozenset({"text" if TOWERS[tower][0] == "input_ids" else "image"})
        return input_kinds(backbone)
    hf = getattr(model, "config", None)
    if hf is None:
        return frozenset()
    if (
        getattr(hf, "text_config", None) is not None
        and getattr(hf, "vision_config", None) is not None
    ):
        return frozenset({"text", "image"})
    kind = {"input_ids": "text", "pixel_values": "image"}.get(getattr(model, "main_input_name", ""))
    return frozenset({kind}) if kind else frozenset()


class _Seen(Exception):
    pass


@torch.no_grad()
def linear_rows(model: nn.Module, args: tuple, kwargs: dict) -> int:
    """How many rows the first linear layer of ``model`` multiplies on these inputs (batch ×
    tokens for a Transformer); the forward pass stops there."""
    rows = []

    def hook(module: nn.Module, inputs: tuple) -> None:
        rows.append(inputs[0].numel() // inputs[0].shape[-1])
        raise _Seen

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    handles = [m.register_forward_pre_hook(hook) for m in linears]
    try:
        model(*args, **kwargs)
    except _Seen:
        pass
    finally:
        for h in handles:
            h.remove()
    if not rows:
        raise PelaError(f"{type(model).__name__} ran no linear layer on these inputs")
    return rows[0]
