"""`SequenceClassifier`: a backbone without a classification head, plus one (pooled states →
linear)."""

from __future__ import annotations

import torch
from torch import nn

from pela.arch.inputs import with_decoder_inputs
from pela.arch.outputs import block_output, call_with_inputs
from pela.layers.hf_modeling import pool


class SequenceClassifier(nn.Module):
    """A backbone without a classification head, plus one: pooled hidden states → `nn.Linear`.

    ``pooling="mean"`` averages the tokens the attention mask keeps; ``"cls"`` takes the first
    token.
    ``hidden_states=True`` pools the last hidden states of the backbone's ``base_model``, for a
    Hugging Face model with a head of another kind (whose main output is that head's, and which is
    not run). An encoder-decoder model pools its decoder's states (see
    `pela.arch.with_decoder_inputs`).
    ``tower`` names the submodule to run instead of the whole backbone (one tower of CLIP).
    Used by `pela.finetune` for models that have no head of the right size.
    """

    def __init__(
        self,
        backbone: nn.Module,
        hidden: int,
        num_classes: int,
        pooling: str = "mean",
        hidden_states: bool = False,
        tower: str | None = None,
    ):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.backbone, self.pooling, self.hidden_states, self.tower = (
            backbone,
            pooling,
            hidden_states,
            tower,
        )
        self.hidden, self.num_classes = hidden, num_classes
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        root = self.backbone.get_submodule(self.tower) if self.tower else self.backbone
        # a task head's output is not hidden states: run its base model instead, which skips the
        # head
        model = getattr(root, "base_model", root) if self.hidden_states else root
        kwargs = with_decoder_inputs(model, kwargs)
        # no separate base model (T5ForConditionalGeneration)
        if self.hidden_states and model is root:
            out = (
                model(*args, **kwargs, output_hidden_states=True)
                if args
                else call_with_inputs(model, model, kwargs, output_hidden_states=True)
            )
            h = (getattr(out, "decoder_hidden_states", None) or out.hidden_states)[-1]
        else:
            out = model(*args, **kwargs) if args else call_with_inputs(model, model, kwargs)
            h = getattr(out, "last_hidden_state", None)
            h = block_output(out) if h is None else h
        # an encoder-decoder model's last states are its decoder's, which has a mask of its own
        mask = kwargs.get("decoder_attention_mask", kwargs.get("attention_mask"))
        return self.head(pool(h, mask, self.hidden, self.pooling))

    def extra_repr(self) -> str:
        return (
            f"pooling={self.pooling!r}, num_classes={self.num_classes}"
            + (", from hidden_states" if self.hidden_states else "")
            + (f", tower={self.tower!r}" if self.tower else "")
        )
