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
from pela.utils.device import model_device
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
    fraction = config.param_budget
    weights = probed(model, layers, config, calibration, fraction, progress)
    # layers the probes cannot see keep these, and every layer if no allocation fits
    ranks = {x.name: uniform_rank(*x.candidate.weight.shape, fraction, config.align)
             for x in layers}
    dense: list[int] = []
    for _ in range(RESPEND_ROUNDS):
        try:
            ranks = allocated(layers, weights, fraction, config.align, dense)
        except PelaError:
            break  # too little left to re-spend: the speed check keeps the slow ones dense later
        slow = [i for i, x in enumerate(layers) if i not in dense and weights[i] is not None
                and too_slow is not None and too_slow(x, ranks[x.name])]
        if not slow:
            break
        dense += slow
        ranks.update({layers[i].name: DENSE for i in slow})
    return ranks


def probed(model: nn.Module, layers: list[Layer], config: LowRankConfig,
           calibration: Calibration, fraction: float, progress: bool) -> list[float | None]:
    """What one unit of each layer's error costs the model (`pela.compression.allocate`), probed at
    the rank that keeps ``fraction`` of it; None for a layer the probe does not reach."""
    device = model_device(model)
    reference = [uniform_rank(*x.candidate.weight.shape, fraction, config.align) for x in layers]
    probes = [(x.name, x.candidate.module, _delta(x.work, x.spectrum, r, device),
               float((x.spectrum.sigma.double() ** 2)[r:].sum()))
              for x, r in zip(layers, reference)]
    with progress_bar(progress, len(probes), "probing sensitivity") as advance:
        gradient = config.sensitivity == "gradient"
        measure = linearized_sensitivities if gradient else sensitivities
        return measure(model, probes, calibration.probe, advance)


def allocated(layers: list[Layer], weights: list[float | None], fraction: float, align: int,
              dense: list[int] = ()) -> dict[str, int]:
    """Ranks that keep ``fraction`` of the layers' parameters, spent where ``weights`` (`probed`)
    say the error costs most; the layers at indices ``dense`` stay dense (`DENSE`) and what they
    keep is taken from the others. A layer the probe did not reach keeps the uniform rank.

    Raises:
        PelaError: what is left cannot give every layer the smallest rank.
    """
    shapes = [tuple(x.candidate.weight.shape) for x in layers]
    reference = [uniform_rank(*shape, fraction, align) for shape in shapes]
    ranks = {x.name: r for x, r in zip(layers, reference)}
    unseen = sum(reference[i] * sum(shapes[i]) for i, w in enumerate(weights) if w is None)
    budget = int(fraction * sum(o * i for o, i in shapes)) - unseen
    budget -= sum(shapes[i][0] * shapes[i][1] for i in dense)
    kept = [i for i, w in enumerate(weights) if w is not None and i not in dense]
    chosen = allocate([shapes[i] for i in kept], [layers[i].spectrum.sigma for i in kept],
                      budget, align, [weights[i] for i in kept])
    ranks.update({layers[i].name: r for i, r in zip(kept, chosen)})
    ranks.update({layers[i].name: DENSE for i in dense})
    return ranks


def _delta(work: torch.Tensor, spectrum: Spectrum, rank: int,
           device: torch.device) -> Callable[[], torch.Tensor]:
    """The change of a layer's weight its factors at ``rank`` make, computed when probed."""
    def make() -> torch.Tensor:
        a, b = spectrum.factors(rank)
        return (b.to(work.dtype) @ a.to(work.dtype) - work).to(device)
    return make
