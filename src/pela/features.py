"""Block features: capturing each Transformer block's output, and the token-masked losses on them.

Below both compression (sensitivity probes) and training (distillation, comparison).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from pela import arch


# ---------------------------------------------------------------- losses (pure functions)
def real_tokens(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The rows of ``x`` (…, d) as (N, d), without the positions ``mask`` marks as padding (when it
    fits ``x``)."""
    if mask is not None and x.dim() == mask.dim() + 1 and x.shape[:-1] == mask.shape:
        return x[mask.to(x.device).bool()]
    return x.reshape(-1, x.shape[-1])


def token_mse(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """MSE between two block outputs over the tokens ``mask`` keeps (all when it is None or does not
    fit).

    Padding positions are left out: their outputs are never used, and matching them wastes the
    student's capacity.
    """
    return F.mse_loss(real_tokens(student, mask).float(), real_tokens(teacher, mask).float())


def token_relative_mse(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the real tokens of ``‖s − t‖² / ‖t‖²``: each token's squared error relative to the
    teacher's feature there, so that neither the blocks whose residual stream is large nor the few
    tokens with massive activations (a language model's first token) outweigh the rest."""
    s, t = real_tokens(student, mask).float(), real_tokens(teacher, mask).float()
    return (
        (s - t).pow(2).sum(-1) / t.pow(2).sum(-1).clamp_min(torch.finfo(torch.float32).tiny)
    ).mean()


FEATURE_LOSSES = {"relative": token_relative_mse, "mse": token_mse}


def feature_loss(
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    mask: torch.Tensor | list[torch.Tensor | None] | None = None,
    kind: str = "mse",
) -> torch.Tensor:
    """Mean over blocks of the loss ``kind`` (`FEATURE_LOSSES`) between student and teacher block
    outputs (every real token).

    ``mask``: one attention mask for every block, or one per block (`pela.arch.block_masks`).
    """
    masks = mask if isinstance(mask, list) else [mask] * len(student)
    loss = FEATURE_LOSSES[kind]
    return torch.stack([loss(s, t, m) for s, t, m in zip(student, teacher, masks)]).mean()


# ---------------------------------------------------------------- plumbing
class BlockCapture:
    """Forward hooks that keep the output of each named block from the latest forward pass.

    A block that runs several times per pass, as a layer whose weights are shared across depth does
    (ALBERT), contributes each call's output in call order: each call is one layer of features.
    """

    def __init__(self, model: nn.Module, names: list[str]):
        self.outputs: dict[str, list[torch.Tensor]] = {}
        # one per tensor of the latest `take`: the block name, with "#k" for repeated calls
        self.labels: list[str] = []
        modules = dict(model.named_modules())
        self.names = names
        self.active = True  # off while the same model runs for something else (an evaluation)
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.active:
                self.outputs.setdefault(name, []).append(arch.block_output(output))

        return hook

    def take(self) -> list[torch.Tensor]:
        calls = [(n, self.outputs.get(n, [])) for n in self.names]
        self.labels = [n if len(ts) == 1 else f"{n}#{k}" for n, ts in calls for k in range(len(ts))]
        self.outputs = {}
        return [t for _, ts in calls for t in ts]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
