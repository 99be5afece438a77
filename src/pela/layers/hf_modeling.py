"""Load a model compressed by pela with transformers alone: ``pela export`` copies this file, as it
is, into the directory it writes, as ``modeling_pela.py``; the config's ``auto_map`` names it. Then

    AutoModel.from_pretrained(DIR, trust_remote_code=True)      # or the AutoModelFor... of its task

builds the original architecture from ``config.json``, puts two-factor layers (``y = B(A x) + b``)
where
``config.pela["factorized"]`` says, and loads ``pela_model.safetensors`` into it (wrapped in
`PelaClassifier` when ``pela finetune`` added a head). It needs torch, transformers and safetensors,
not pela; it imports nothing else. pela's own `pela.LowRankLinear` is this file's, so the two cannot
drift apart.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# not model.safetensors, so that loading without this code fails instead of leaving layers random
WEIGHTS = "pela_model.safetensors"
HUB_KWARGS = (
    "cache_dir",
    "force_download",
    "local_files_only",
    "proxies",
    "revision",
    "subfolder",
    "token",
)


class LowRankLinear(nn.Module):
    """``nn.Linear`` factorized as ``W ≈ B·A``: ``.a`` (rank × in, no bias) then ``.b`` (out × rank,
    the bias)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.a = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.b = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))

    @property
    def weight(self) -> torch.Tensor:
        """The dense product ``B·A``, for model code that reads a layer's ``.weight`` (its dtype,
        say)."""
        return self.b.weight @ self.a.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.b.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, bias={self.b.bias is not None}"


def pool(h: torch.Tensor, mask: torch.Tensor | None, hidden: int, pooling: str) -> torch.Tensor:
    """Last hidden states ``h`` to one vector per example: as they are if already pooled, a feature
    map's mean over positions, the first token (``"cls"``) or the mean of the tokens ``mask``
    keeps."""
    if h.dim() == 2:
        return h
    if h.dim() == 4:
        return h.mean((2, 3)) if h.shape[1] == hidden else h.mean((1, 2))
    if pooling == "cls":
        return h[:, 0]
    if mask is None:
        return h.mean(1)
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1)


class PelaClassifier(nn.Module):
    """The classification head ``pela finetune`` put on a model that had none: the backbone's last
    hidden states, pooled (masked mean of the tokens, or the first token), then ``nn.Linear``."""

    def __init__(self, backbone: nn.Module, hidden: int, num_classes: int, pooling: str = "mean"):
        super().__init__()
        self.backbone, self.hidden, self.num_classes, self.pooling = (
            backbone,
            hidden,
            num_classes,
            pooling,
        )
        self.head = nn.Linear(hidden, num_classes)
        self.config = backbone.config

    def forward(self, *args: Any, labels: torch.Tensor | None = None, **kwargs: Any) -> Any:
        out = self.backbone(*args, **kwargs)
        h = getattr(out, "last_hidden_state", None)
        logits = self.head(
            pool(
                out[0] if h is None else h, kwargs.get("attention_mask"), self.hidden, self.pooling
            )
        )
        loss = None if labels is None else nn.functional.cross_entropy(logits.float(), labels)
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(loss=loss, logits=logits)


class PelaLowRankModel:
    """What the config's ``auto_map`` names for every auto class: only its ``from_pretrained`` is
    used, and it returns the original architecture's own class (``BertModel``, ``GPT2LMHeadModel``,
    ...)."""

    @classmethod
    def register_for_auto_class(cls, auto_class: Any = None) -> None:
        """transformers calls this on remote code; the model returned is a class it already
        knows."""

    @classmethod
    def from_pretrained(cls, path: Any, *args: Any, config: Any = None, **kwargs: Any) -> nn.Module:
        # imported here: pela imports this module for `LowRankLinear` and should not pay for
        # transformers
        import transformers
        from safetensors import safe_open
        from safetensors.torch import load_model

        hub = {k: kwargs[k] for k in HUB_KWARGS if kwargs.get(k) is not None}
        if config is None:
            config = transformers.AutoConfig.from_pretrained(path, **hub)
        spec = config.pela
        model = getattr(transformers, spec["architecture"])._from_config(
            config, dtype=torch.float32
        )
        if spec.get("head"):
            model = PelaClassifier(
                model, spec["head"]["hidden"], spec["head"]["num_classes"], spec["head"]["pooling"]
            )
        for name, layer in spec["factorized"].items():
            parent, _, attr = name.rpartition(".")
            setattr(
                model.get_submodule(parent) if parent else model,
                attr,
                LowRankLinear(
                    layer["in_features"], layer["out_features"], layer["rank"], layer["bias"]
                ),
            )
        weights = transformers.utils.cached_file(path, WEIGHTS, **hub)
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
        if dtype == "auto":  # the dtype the weights were saved in
            with safe_open(weights, "pt") as f:
                dtype = next((f.get_slice(k).get_dtype() for k in f.keys()), "F32")
            dtype = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}.get(
                dtype, torch.float32
            )
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        if dtype is not None:
            model.to(dtype)
        load_model(model, weights, strict=True)
        device = kwargs.get("device_map")
        if isinstance(device, (str, torch.device)) and str(device) != "auto":
            model.to(device)
        return model.eval()
