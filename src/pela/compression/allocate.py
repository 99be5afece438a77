"""Global rank allocation: one parameter budget for the whole model, spent where it removes the most
error.

A uniform ratio gives every layer the same share of its size, but layers differ: some spectra fall
off fast (a small rank loses little), others are flat, and an error in some layers hurts the model's
features far more than the same error elsewhere. Keeping singular value ``i`` of layer ``l`` removes
``σᵢ²`` from that layer's squared error (in the weights for ``init="svd"``, in the outputs on
calibration inputs for ``init="whiten"``) and costs ``m + n`` parameters. `sensitivities` measures,
once per layer on a few calibration examples, how much block-feature MSE one unit of that error
causes, and `allocate` weighs each ``σᵢ²`` by it. Because each layer's ``σ²`` are sorted, the gains
per parameter only fall as its rank grows, so taking the best next step (``align`` ranks at a time)
across all layers until the budget is spent is optimal up to the last step.

Measured on MiniLM (docs/BENCHMARKS.md): weighing by the layers' own relative errors alone
allocates *worse* than a uniform ratio; with measured sensitivities it beats it clearly.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Sequence

import torch
from torch import nn

from pela import arch
from pela.compression.replay import BlockCalls, Call, replay, without_cache
from pela.errors import PelaError
from pela.features import feature_loss
from pela.utils.device import model_device


def max_rank(out_features: int, in_features: int, align: int) -> int:
    """The largest rank (a multiple of ``align`` where possible) that still makes the layer
    smaller."""
    m, n = in_features, out_features
    r = (m * n - 1) // (m + n)  # r·(m+n) < m·n
    return r // align * align if r >= align else r


def allocate(
    shapes: Sequence[tuple[int, int]],
    spectra: Sequence[torch.Tensor],
    budget: int,
    align: int = 8,
    weights: Sequence[float] | None = None,
) -> list[int]:
    """Ranks, one per layer, whose factor parameters ``Σ r·(m+n)`` fit in ``budget`` at least total
    error.

    Args:
        shapes: ``(out_features, in_features)`` of each layer.
        spectra: each layer's singular values, descending.
        budget: parameters the factors may hold in all (weights only; biases are unchanged).
        align: ranks move in steps of this many (every layer starts at one step).
        weights: what one unit of each layer's ``σ²`` costs the model (`sensitivities`); default
            ``1 / Σσ²``, the sum of the layers' *relative* errors.

    Raises:
        PelaError: the budget cannot give every layer even the smallest rank.
    """
    ranks, steps, heap = [], [], []
    spent = 0
    for i, ((n_out, n_in), sigma) in enumerate(zip(shapes, spectra)):
        energy = sigma.double() ** 2
        cap = max_rank(n_out, n_in, align)
        start = min(align, cap)
        if start < 1:
            raise PelaError(f"layer {i} ({n_in}→{n_out}) is too small to factorize")
        if weights is not None:
            weight = float(weights[i])
        else:
            weight = 1 / float(energy.sum()) if float(energy.sum()) > 0 else 1.0
        ranks.append(start)
        steps.append((energy, cap, weight, n_in + n_out))
        spent += start * (n_in + n_out)
        _push(heap, i, start, steps[i], align)
    if spent > budget:
        raise PelaError(
            f"the parameter budget ({budget:,}) is below the smallest possible model "
            f"({spent:,}: rank {align} in every layer)"
        )
    while heap:
        _, i, step = heapq.heappop(heap)
        cost = step * steps[i][3]
        if spent + cost > budget:
            continue  # this layer's next step does not fit; cheaper steps elsewhere still may
        ranks[i] += step
        spent += cost
        _push(heap, i, ranks[i], steps[i], align)
    return ranks


def _push(heap: list, i: int, rank: int, info: tuple, align: int) -> None:
    energy, cap, weight, width = info
    step = min(align, cap - rank)
    if step > 0:
        gain = weight * float(energy[rank : rank + step].sum())
        heapq.heappush(heap, (-gain / (step * width), i, step))


@torch.no_grad()
def sensitivities(
    model: nn.Module,
    layers: Sequence[tuple[str, nn.Module, Callable[[], torch.Tensor], float]],
    probe: Sequence[dict[str, Any]],
    progress: Callable[..., None] = lambda **_: None,
) -> list[float | None]:
    """Block-feature MSE per unit of output error, for each layer: ``MSE(truncated layer) / its
    σ² tail``.

    ``layers`` holds ``(name, module, delta, tail)``: ``delta()`` gives ``BA − W`` at a reference
    rank and ``tail`` the ``σ²`` it discards. Each layer in turn gets ``x (BA − W)ᵀ`` added to its
    output by a forward hook while the ``probe`` batches run, and the mean block-feature MSE to the
    unmodified model (real tokens only) is measured. Layers outside every block (their error never
    reaches the block features), and layers the probe never runs (one tower of CLIP, probed with
    images alone), get ``None``; with no blocks, the model's main output is compared instead.
    """
    blocks = arch.find_blocks(model)
    device = model_device(model)
    batches = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in probe]
    recorder = BlockCalls(model, blocks)

    def run(batch: dict[str, Any]) -> tuple[list[torch.Tensor], list[Call], list[bool]]:
        """The features of one full pass: block outputs (the main output where there are no
        blocks), and its calls."""
        result: list[Any] = []
        calls, linked = recorder.record(lambda: result.append(arch.forward(model, batch)))
        features = recorder.features(calls) if blocks else [arch.main_output(result[0])]
        return features, calls, linked

    was_training = model.training
    model.eval()
    try:
        with without_cache(model):
            reference = [run(b) for b in batches]
            result: list[float | None] = []
            for name, module, delta, tail in layers:
                progress(info=name)
                block = next((b for b in blocks if name.startswith(b + ".")), None)
                if blocks and block is None:
                    result.append(None)
                    continue
                mse = _probed(module, delta(), batches, reference,
                              lambda batch, ref, b=block: _perturbed(run, recorder, batch, ref, b))
                result.append(None if mse is None else (mse / tail if tail > 0 else 0.0))
            return result
    finally:
        recorder.remove()
        model.train(was_training)


def _probed(module: nn.Module, d: torch.Tensor, batches: list[dict[str, Any]], reference: list,
            replay: Callable[[dict[str, Any], tuple], list[torch.Tensor]]) -> float | None:
    """The mean feature MSE the probe batches show with ``x dᵀ`` added to ``module``'s output;
    ``None`` where the probe never reached it (CLIP's text tower, calibrated on images)."""
    calls = []

    def perturb(mod: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return out + args[0].to(d.dtype) @ d.T

    handle = module.register_forward_hook(perturb)
    try:
        got = [replay(batch, ref) for batch, ref in zip(batches, reference)]
    finally:
        handle.remove()
    if not calls:
        return None
    losses = [float(feature_loss(g, r[0], b.get("attention_mask")))
              for g, r, b in zip(got, reference, batches)]
    return sum(losses) / len(batches)


def _perturbed(
    run: Callable, recorder: BlockCalls, batch: dict[str, Any], reference: tuple, block: str | None
) -> list[torch.Tensor]:
    """The features with the perturbation hooked in: the blocks from ``block`` on replayed on the
    recorded inputs (`pela.compression.replay`), or, where the blocks do not form one chain, a full
    pass."""
    if block is None:  # no blocks: the model's output is the feature
        return run(batch)[0]
    _, calls, linked = reference
    start = next((i for i, c in enumerate(calls) if c.name == block), None)
    if start is None:  # the block never ran on this batch: neither does the layer
        return reference[0]
    outputs = replay(calls, linked, start)
    return recorder.features(calls, outputs) if outputs is not None else run(batch)[0]
