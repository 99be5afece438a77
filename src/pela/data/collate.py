"""`Collator`: raw examples to model inputs with the model's own preprocessing (tokenizer, image
transform)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from pela.arch.inputs import accepted_inputs, built_image_size, input_kinds
from pela.arch.properties import max_positions
from pela.errors import PelaError
from pela.metadata import info


def _timm_data_config(model: nn.Module) -> dict[str, Any] | None:
    """timm's evaluation preprocessing for a timm model (None for any other model)."""
    cfg = getattr(model, "pretrained_cfg", None)
    if not (isinstance(cfg, dict) and "input_size" in cfg):
        return None
    from timm.data import resolve_model_data_config

    data_cfg = dict(resolve_model_data_config(model))
    size = built_image_size(model)
    # built with img_size=...: the pretrained size no longer applies
    if size and tuple(size) != tuple(data_cfg["input_size"][1:]):
        data_cfg["input_size"] = (data_cfg["input_size"][0], *size)
        data_cfg["crop_pct"] = 1.0
    return data_cfg


class _HFImageTransform:
    """A Hugging Face image processor as a one-image transform (a class, not a lambda, so it
    pickles)."""

    def __init__(self, processor: Any):
        self.processor = processor

    def __call__(self, image: Any) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


def _with_pad(tokenizer: Any) -> Any:
    """``tokenizer``, padding with its end-of-text token if it has no pad token (many language
    models' tokenizers have none; padding is masked anyway)."""
    if (
        tokenizer is not None
        and getattr(tokenizer, "pad_token", "") is None
        and getattr(tokenizer, "eos_token", None) is not None
    ):
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class Collator:
    """Turns raw examples into a batch of model inputs, with the model's own preprocessing.

    Text goes through the tokenizer saved with the model (truncated to ``max_length``, default the
    model's maximum); images through timm's data config (timm models) or the Hugging Face image
    processor (Hugging Face models).
    """

    def __init__(
        self,
        model: nn.Module,
        max_length: int | None = None,
        tokenizer: Any = None,
        image_transform: Any = None,
    ):
        self.positions = max_positions(model)
        if max_length is not None and self.positions is not None and max_length > self.positions:
            raise PelaError(
                f"max_length {max_length} is more than this model takes: at most {self.positions} "
                "positions"
            )
        self.max_length = max_length
        self._tokenizer, self._transform = _with_pad(tokenizer), image_transform
        # what preprocessing needs of the model, kept instead of the model itself, so that
        # DataLoader
        # workers started by spawn or forkserver receive a small picklable object
        self.files = info(model).files
        # a model whose own code the user trusted (pela.load's trust_remote_code) may bring its
        # tokenizer's code too; for any other, transformers is told no outright instead of asking
        source = info(model).source or info(getattr(model, "backbone", None)).source or {}
        self.trust_remote_code = bool(source.get("remote_code"))
        self.timm_data_config = _timm_data_config(model)
        self.kinds, self.accepts = input_kinds(model), accepted_inputs(model)
        self.model_name = type(model).__name__

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            if not self.files:
                raise PelaError(
                    "text data needs a tokenizer, and this model has none saved alongside it"
                )
            try:
                tokenizer = AutoTokenizer.from_pretrained(
                    self.files, trust_remote_code=self.trust_remote_code
                )
            except Exception as e:
                raise PelaError(
                    f"cannot load the tokenizer saved in {self.files}: {str(e).splitlines()[0]}"
                ) from e
            # with no tokenizer files, transformers builds one that knows only its special tokens:
            # every word would be [UNK]
            if len(tokenizer) <= len(tokenizer.all_special_tokens):
                raise PelaError(
                    f"text data needs the model's tokenizer, and {self.files} has none (its "
                    f"tokenizer would know only {len(tokenizer)} special tokens); save the one its "
                    "weights were trained with beside them "
                    "(AutoTokenizer.from_pretrained(ORIGINAL).save_pretrained(DIR))"
                )
            self._tokenizer = _with_pad(tokenizer)
        return self._tokenizer

    @property
    def transform(self) -> Any:
        if self._transform is None:
            if self.timm_data_config is not None:
                from timm.data import create_transform

                self._transform = create_transform(**self.timm_data_config)
            else:
                from transformers import AutoImageProcessor

                try:
                    processor = AutoImageProcessor.from_pretrained(
                        self.files, trust_remote_code=self.trust_remote_code
                    )
                except Exception:
                    where = (
                        f"{self.files} has no preprocessor_config.json"
                        if self.files
                        else "the model has no files saved alongside it"
                    )
                    raise PelaError(
                        f"image data needs the model's image processor, and {where}; save the one "
                        "its weights were trained with beside them "
                        "(AutoImageProcessor.from_pretrained(ORIGINAL).save_pretrained(DIR))"
                    ) from None
                self._transform = _HFImageTransform(processor)
        return self._transform

    def check(self, data: Any, what: str = "the data") -> None:
        """Collate the first example of ``data``, so that data the model cannot read is refused
        before any slow work (training, a final evaluation) instead of after it."""
        if len(data):
            try:
                self([data[0]])
            except PelaError as e:
                raise PelaError(f"{what}: {e}") from None

    def _check_kind(self, example: dict[str, Any]) -> None:
        """Refuse data of which the model reads nothing (text for a ViT, images for BERT), in one
        line."""
        given = {
            kind
            for kind, keys in (("text", ("text", "input_ids")), ("image", ("image",)))
            if any(k in example for k in keys)
        }
        if not given or not self.kinds or given & self.kinds:
            return
        reads = "images" if self.kinds == {"image"} else "text"
        kind = "an image" if reads == "images" else "a text"
        raise PelaError(
            f"this is {kind} model ({self.model_name}): it reads {reads}, and the data is "
            f"{'images' if given == {'image'} else 'text'}"
        )

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        self._check_kind(examples[0])
        if "text" in examples[0]:
            limit = self.max_length or min(
                getattr(self.tokenizer, "model_max_length", 512), self.positions or 4096, 4096
            )
            pairs = [e["text_pair"] for e in examples] if "text_pair" in examples[0] else None
            enc = self.tokenizer(
                [e["text"] for e in examples],
                pairs,
                padding=True,
                truncation=True,
                max_length=limit,
                return_tensors="pt",
            )
            # what the model does not take is dropped here (a BERT tokenizer's token_type_ids beside
            # a Llama);
            # the attention mask stays: pela reads it itself, to leave padding out of losses and
            # statistics
            batch.update(
                {
                    k: v
                    for k, v in enc.items()
                    if self.accepts is None or k in self.accepts or k == "attention_mask"
                }
            )
        # already token ids, of one length (`pela.data.packing.PackedText`): nothing is padding
        if "input_ids" in examples[0]:
            batch["input_ids"] = torch.stack([e["input_ids"] for e in examples])
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        if "image" in examples[0]:
            batch["pixel_values"] = torch.stack([self.transform(e["image"]) for e in examples])
        if "label" in examples[0]:
            batch["labels"] = torch.tensor([e["label"] for e in examples])
        return batch
