"""Ranks for a parameter budget (``LowRankConfig.param_budget``): each layer's sensitivity probed at
the rank one ratio for all layers would give, then the budget spent where it buys most
(`pela.compression.allocate`), and, with the speed check, not on layers whose factors would be no
faster than their dense weight."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from pela.compression.allocate import allocate, max_rank, sensitivities
from pela.compression.calibrate import Calibration
from pela.compression.config import LowRankConfig
from pela.compression.factors import Layer
from pela.compression.linearized import linearized_sensitivities
from pela.compression.ranks import align_rank
from pela.errors import PelaError
from pela.linalg import Spectrum
from pela.utils.progress import progress_bar


def uniform_rank(n_out: int, n_in: int, fraction: float, align: int) -> int:
    """The rank that keeps ``fraction`` of a layer's parameters, kept in [one step, break-even)."""
    cap = max_rank(n_out, n_in, align)
    kept = align_rank(math.floor(fraction * n_out * n_in / (n_out + n_in)), align, up=False)
    return max(min(align, cap), min(kept, cap))


# a rank of 0: the layer stays dense (its factors would be no faster; `budget_ranks`)
DENSE = 0
RESPEND_ROUNDS = 3  # allocations at most: each may find layers whose new ranks are no faster


def budget_ranks(model: nn.Module, layers: list[Layer], config: LowRankConfig,
                 calibration: Calibration, progress: bool,
                 too_slow: Callable[[Layer, int], bool] | None = None) -> dict[str, int]:
    """Ranks for ``config.param_budget``: probe each layer's sensitivity at the uniform rank of the
    same size, then allocate.

    ``too_slow(layer, rank)``: whether the layer's factors at ``rank`` would be no faster than its
    dense weight where the model is served (the speed check). Such a layer stays dense (`DENSE`,
    its report row saying why) and the parameters it keeps are taken from the others, allocated
    again, so that the model still meets the budget.
    """
    fraction, align = config.param_budget, config.align
    device = next(model.parameters()).device
    shapes = [tuple(x.candidate.weight.shape) for x in layers]
    reference = [uniform_rank(*shape, fraction, align) for shape in shapes]
    probes = [(x.name, x.candidate.module, _delta(x.work, x.spectrum, r, device),
               float((x.spectrum.sigma.double() ** 2)[r:].sum()))
              for x, r in zip(layers, reference)]
    with progress_bar(progress, len(probes), "probing sensitivity") as advance:
        gradient = config.sensitivity == "gradient"
        measure = linearized_sensitivities if gradient else sensitivities
        weights = measure(model, probes, calibration.probe, advance)
    # layers the probes cannot see keep these
    ranks = {x.name: r for x, r in zip(layers, reference)}
    free = [i for i, w in enumerate(weights) if w is not None]
    unseen = sum(reference[i] * sum(shapes[i]) for i, w in enumerate(weights) if w is None)
    total = int(fraction * sum(o * i for o, i in shapes)) - unseen
    dense: list[int] = []
    for _ in range(RESPEND_ROUNDS):
        kept = [i for i in free if i not in dense]
        budget = total - sum(shapes[i][0] * shapes[i][1] for i in dense)
        try:
            chosen = allocate([shapes[i] for i in kept], [layers[i].spectrum.sigma for i in kept],
                              budget, align, [weights[i] for i in kept])
        except PelaError:
            break  # too little left to re-spend: the speed check keeps the slow ones dense later
        ranks.update({layers[i].name: r for i, r in zip(kept, chosen)})
        slow = [i for i, r in zip(kept, chosen) if too_slow is not None and too_slow(layers[i], r)]
        if not slow:
            break
        dense += slow
        ranks.update({layers[i].name: DENSE for i in slow})
    return ranks


def _delta(work: torch.Tensor, spectrum: Spectrum, rank: int,
           device: torch.device) -> Callable[[], torch.Tensor]:
    """The change of a layer's weight its factors at ``rank`` make, computed when probed."""
    def make() -> torch.Tensor:
        a, b = spectrum.factors(rank)
        return (b.to(work.dtype) @ a.to(work.dtype) - work).to(device)
    return make
