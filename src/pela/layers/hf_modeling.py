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
    the bias). Layers that read the same input can share one product of their ``A`` factors
    (`SharedInput`)."""

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
        self.shared: SharedInput | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the factors from the dicts nn.Module keeps them in: its __getattr__ costs a microsecond
        # a lookup, which one token at a time is as much as a small product's arithmetic
        a, b = self._modules["a"], self._modules["b"]
        h = None
        if self.shared is not None and self._may_share(a):
            h = self.shared.product(x, self)
        if not _plain(b):
            return b(a(x) if h is None else h)
        pb = b._parameters
        if h is None:  # the products themselves: two module calls fewer per token
            h = nn.functional.linear(x, a._parameters["weight"]) if _plain(a) else a(x)
        return nn.functional.linear(h, pb["weight"], pb["bias"])

    @staticmethod
    def _may_share(a: nn.Module) -> bool:
        # only where the shared product is exactly what .a would compute: no hook to see .a's
        # call, no adapter (peft) in .a's place, no gradient to reach .a's weight through it
        return _plain(a) and not (torch.is_grad_enabled() and a._parameters["weight"].requires_grad)

    def _apply(self, fn: Any, recurse: bool = True) -> "LowRankLinear":
        super()._apply(fn, recurse)
        if self.shared is not None:  # .to(), .half(), .cuda() gave .a new storage
            self.shared.follow()
        return self

    @property
    def weight(self) -> torch.Tensor:
        """The dense product ``B·A``, for model code that reads a layer's ``.weight`` (its dtype,
        say)."""
        return self.b.weight @ self.a.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.b.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, bias={self.b.bias is not None}")


# torch registers global hooks in these dicts, never in new ones: looked up once, not per call
_GLOBAL_HOOKS = nn.modules.module._global_forward_hooks
_GLOBAL_PRE_HOOKS = nn.modules.module._global_forward_pre_hooks


def _plain(linear: nn.Module) -> bool:
    """Whether calling ``linear`` is exactly ``F.linear`` on its weight: an ``nn.Linear`` itself
    (not an adapter or a sharded wrapper), no hook to see the call, no forward put in place of
    its own (as accelerate's offloading does)."""
    return (
        type(linear) is nn.Linear
        and not (linear._forward_hooks or linear._forward_pre_hooks)
        and "forward" not in linear.__dict__
        # a wrapper that sets its own tensors in place of the parameters (FSDP's flat views)
        and "weight" in linear._parameters and "weight" not in linear.__dict__
        and not (_GLOBAL_HOOKS or _GLOBAL_PRE_HOOKS)
    )


def _exporting() -> bool:
    return getattr(torch.compiler, "is_exporting", lambda: False)()


class SharedInput:
    """The ``A`` factors of layers that read the same input (q, k and v; gate and up), stacked
    into one matrix and multiplied once: one product instead of several small ones, the same
    numbers.

    Each layer's ``.a.weight`` becomes a view into the stack, so training, loading weights and
    edits in place reach it. The first layer of the group called on an input multiplies the
    stack and keeps the result; the others take their rows of it while the input is the same
    tensor, unchanged (its version counter), and the last lets it go.
    """

    def __init__(self, layers: list[LowRankLinear]):
        self.layers = layers
        self.offsets = [0]
        for layer in layers:
            self.offsets.append(self.offsets[-1] + layer.rank)
        self._forget()
        self.stack()

    @torch.no_grad()
    def stack(self) -> None:
        """Concatenate the layers' ``A`` into one tensor and make each a view of it."""
        self.weight = torch.cat([layer.a.weight.detach() for layer in self.layers])
        for layer, start, end in zip(self.layers, self.offsets, self.offsets[1:]):
            layer.a.weight.data = self.weight[start:end]
            layer.shared = self

    def intact(self) -> bool:
        """Whether every layer's ``A`` is still its rows of the stack."""
        w = self.weight
        row, start = w.stride(0) * w.element_size(), w.data_ptr()
        for layer, offset in zip(self.layers, self.offsets):
            a = layer._modules["a"]._parameters.get("weight")
            if (a is None or a.dtype != w.dtype or a.device != w.device
                    or a.data_ptr() != start + offset * row):
                return False
        return True

    def follow(self) -> None:
        """Stack again once every layer has moved to the same new device or dtype."""
        a = [layer.a.weight for layer in self.layers]
        moved = all(w.dtype == a[0].dtype and w.device == a[0].device for w in a)
        if moved and not self.intact():
            self._forget()
            self.stack()

    def product(self, x: torch.Tensor, layer: LowRankLinear) -> torch.Tensor | None:
        """``layer``'s ``A x``, from the group's one product; None when the stack is broken."""
        i = self.layers.index(layer)
        # a traced graph has no version counters, and functionalizes what changes in place: the
        # same tensor object within the group's calls, as in inference mode
        traced = torch.compiler.is_compiling() and not _exporting()
        version = None if traced or x.is_inference() else x._version
        if x is not self._input or version != self._version or not self._left:
            weight = self._weight()
            if weight is None:
                return None
            self._input, self._version = x, version
            self._output = nn.functional.linear(x, weight)
            self._left = len(self.layers)
        out = self._output[..., self.offsets[i] : self.offsets[i + 1]]
        self._left -= 1
        if not self._left:
            self._forget()
        return out

    def _weight(self) -> torch.Tensor | None:
        if _exporting():
            # traced tensors have no addresses to compare; the graph stacks the parameters
            # themselves (a runtime folds the constant concatenation once)
            return torch.cat([layer.a.weight for layer in self.layers])
        if torch.compiler.is_compiling():
            return self.weight  # the compiler guards on the objects it traced
        return self.weight if self.intact() else None

    def _forget(self) -> None:
        self._input = self._output = self._version = None
        self._left = 0

    def names(self, model: nn.Module) -> list[str]:
        where = {id(m): n for n, m in model.named_modules()}
        return [where[id(layer)] for layer in self.layers]


def share_inputs(model: nn.Module, groups: list[list[str]]) -> int:
    """Stack the ``A`` factors of each group of `LowRankLinear` layers (by name) that read the same
    input; returns how many groups were stacked."""
    for names in groups:
        SharedInput([model.get_submodule(n) for n in names])
    return len(groups)


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
        share_inputs(model, spec.get("shared_inputs", []))  # after: safetensors loads no views
        device = kwargs.get("device_map")
        if isinstance(device, (str, torch.device)) and str(device) != "auto":
            model.to(device)
        return model.eval()
