"""Learning rates for factored layers: a step on the factors that moves ``B·A`` as far as a dense
step.

Adam moves every weight it trains by about the learning rate per step. A dense weight ``W`` moves by
that much; a factored one moves through its factors, ``ΔW ≈ ΔB·A + B·ΔA``, so an element of ``B·A``
moves by about ``lr · sqrt(‖A[:, j]‖² + ‖B[i, :]‖²)`` (steps of random sign): the factors' size sets
the step. At the rate tuned for a dense model, large factors take steps larger than a dense layer
would and small ones smaller. `factor_rates` gives each factored layer the multiplier of the rate
that makes the two match on average, ``1 / sqrt(‖A‖²/in + ‖B‖²/out)``.

Measured (docs/BENCHMARKS.md, `benchmarks/finetune_gap.py`): fine-tuning pela's student at the
rates of the dense model loses accuracy the same student keeps when its factors are merged first.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pela.errors import PelaError
from pela.layers.lowrank import LowRankLinear

MATCHED = "matched"


def parse_factor_lr(value: str) -> float | str:
    """``factor_lr`` as a command line gives it: ``matched`` or a number (`FinetuneConfig` checks
    its range)."""
    if value == MATCHED:
        return value
    try:
        return float(value)
    except ValueError:
        raise PelaError(f"factor_lr must be {MATCHED!r} or a number > 0, got {value!r}") from None


def step_matched(layer: LowRankLinear) -> float:
    """The multiplier of the learning rate at which Adam's steps on ``layer``'s factors move ``B·A``
    as far as a dense weight."""
    a, b = layer.a.weight.detach().float(), layer.b.weight.detach().float()
    size = a.pow(2).sum() / a.shape[1] + b.pow(2).sum() / b.shape[0]
    return float(size.rsqrt()) if size > 0 else 1.0


def factor_rates(
    model: nn.Module, factor_lr: float | str
) -> list[tuple[list[nn.Parameter], float]]:
    """Each factored layer's trained factors with their learning-rate multiplier, layer by layer.

    ``factor_lr``: ``"matched"`` (`step_matched`, per layer) or one multiplier for every layer; the
    factors of layers that are not trained (LoRA, frozen) are left out.
    """
    rates, seen = [], set()
    for layer in model.modules():
        if isinstance(layer, LowRankLinear):
            trained = [
                p for p in (layer.a.weight, layer.b.weight) if p.requires_grad and id(p) not in seen
            ]
            # a factor shared by two layers takes the first one's rate: AdamW takes it once
            seen.update(map(id, trained))
            if trained:
                rates.append(
                    (trained, step_matched(layer) if factor_lr == MATCHED else float(factor_lr))
                )
    return rates


def param_groups(
    params: list[nn.Parameter], lr: float, rates: list[tuple[list[nn.Parameter], float]] | None
) -> list[dict[str, Any]]:
    """AdamW's parameter groups: ``params`` without a rate at ``lr``, then one group per layer of
    ``rates``.

    One group per layer, whatever the values: a run resumed from a checkpoint has the same
    groups."""
    rates = [(ps, scale) for ps, scale in rates or [] if ps]
    rated = {id(p) for ps, _ in rates for p in ps}
    rest = [p for p in params if id(p) not in rated]
    return ([{"params": rest, "lr": lr}] if rest else []) + [
        {"params": ps, "lr": lr * scale} for ps, scale in rates
    ]
