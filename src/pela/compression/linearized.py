"""Layer sensitivities from gradients: every layer's at once, from a few backward passes.

`pela.compression.allocate.sensitivities` perturbs one layer at a time and re-runs the blocks after
it: exact, but its cost grows with the number of layers times the depth (a 30-block language model
has 210 layers to probe). Here the block features are linearized instead. With ``r`` a standard
normal vector over every real token of every block's output, scaled so that ``E‖·‖²`` is the
feature MSE, one backward pass of ``s = ⟨r, F⟩`` gives ``g_l = ∂s/∂y_l`` at *every* layer's output
``y_l``, and ``⟨g_l, δ_l⟩`` with the layer's truncation error ``δ_l = x (BA − W)ᵀ`` has
``E[⟨g_l, δ_l⟩²] = ‖J_l δ_l‖²``: the feature MSE the truncation causes, to first order. Examples do
not interact, so each example's term is an independent estimate; summing their squares and
averaging ``draws`` draws of ``r`` gives a relative spread of about ``√(2 / (examples · draws))``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from pela import arch
from pela.features import BlockCapture, real_tokens
from pela.utils.device import model_device


def linearized_sensitivities(
    model: nn.Module,
    layers: Sequence[tuple[str, nn.Module, Callable[[], torch.Tensor], float]],
    probe: Sequence[dict[str, Any]],
    progress: Callable[..., None] = lambda **_: None,
    draws: int = 4,
    seed: int = 0,
) -> list[float | None]:
    """Same contract as `pela.compression.allocate.sensitivities`: block-feature MSE per unit of
    ``σ²`` tail for each ``(name, module, delta, tail)``, ``None`` for layers outside every block or
    never reached."""
    blocks = arch.find_blocks(model)
    device = model_device(model)
    in_block = [not blocks or any(name.startswith(b + ".") for b in blocks) for name, *_ in layers]
    deltas = [delta().to(device) if ok else None for (_, _, delta, _), ok in zip(layers, in_block)]
    totals = [0.0] * len(layers)
    reached = [False] * len(layers)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    capture = BlockCapture(model, blocks) if blocks else None
    try:
        for batch in probe:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            for _ in range(draws):
                terms = _one_draw(model, layers, deltas, batch, capture, generator)
                for i, term in terms.items():
                    totals[i] += term / draws
                    reached[i] = True
            progress(info=f"{len(probe)} batches × {draws} draws")
    finally:
        if capture is not None:
            capture.remove()
        model.train(was_training)
    result: list[float | None] = []
    for (_, _, _, tail), total, ok, seen in zip(layers, totals, in_block, reached):
        mse = total / len(probe)
        result.append(None if not ok or not seen else (mse / tail if tail > 0 else 0.0))
    return result


def _one_draw(
    model: nn.Module,
    layers: Sequence[tuple],
    deltas: list[torch.Tensor | None],
    batch: dict[str, Any],
    capture: BlockCapture | None,
    generator: torch.Generator,
) -> dict[int, float]:
    """``Σ_examples ⟨g_l, δ_l⟩²`` for each layer the batch reaches, for one draw of ``r``."""
    slots: dict[int, torch.Tensor] = {}
    inputs: dict[int, torch.Tensor] = {}

    def hook(i: int) -> Callable:
        def forward_hook(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
            if i in slots or not torch.is_tensor(out):
                return out
            slots[i] = torch.zeros_like(out, requires_grad=True)  # ∂s/∂(this) is ∂s/∂y_l
            inputs[i] = args[0].detach()
            return out + slots[i]

        return forward_hook

    handles = [
        module.register_forward_hook(hook(i))
        for i, (_, module, _, _) in enumerate(layers)
        if deltas[i] is not None
    ]
    try:
        with torch.enable_grad():
            output = arch.forward(model, batch)
            features = capture.take() if capture is not None else [arch.main_output(output)]
            mask = batch.get("attention_mask")
            s = 0.0
            for f in features:
                real = real_tokens(f, mask)
                r = torch.randn(real.shape, generator=generator).to(real.device, real.dtype)
                s = s + (r * real).sum() / math.sqrt(len(features) * real.numel())
            examples = features[0].shape[0]
            order = sorted(slots)
            grads = (
                torch.autograd.grad(s, [slots[i] for i in order], allow_unused=True)
                if order
                else []
            )
    finally:
        for h in handles:
            h.remove()
    terms = {}
    with torch.no_grad():
        for i, g in zip(order, grads):
            if g is None:
                continue
            d = deltas[i]
            delta = inputs[i].to(d.dtype) @ d.T  # the layer's output error at the reference rank
            # Swin's windows are not examples: one sum
            rows = delta.shape[0] if delta.shape[0] == examples else 1
            per_example = (g.to(d.dtype) * delta).reshape(rows, -1).sum(1)
            terms[i] = float((per_example.double() ** 2).sum())
    return terms
