"""One eligible layer on its way to factors: its spectrum, by the config's init, and the
`LowRankLinear` cut from it, with its line of the report filled in as it goes.

Every compression strategy (`pela.compression.strategies`) works on these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from pela.compression.config import LowRankConfig
from pela.compression.inits import INITS, NEEDS_CALIBRATION
from pela.compression.ranks import choose_rank, relative_error, tail_error
from pela.compression.report import LayerReport
from pela.compression.targets import Candidate
from pela.errors import PelaError
from pela.layers.lowrank import LowRankLinear
from pela.linalg import Spectrum
from pela.utils.progress import progress_bar

# the factors cut for each layer, not yet in the model: layer -> (parent, attribute, factors)
Swaps = dict[str, tuple[nn.Module, str, LowRankLinear]]


@dataclass
class Layer:
    """One eligible layer on its way to being factorized."""

    candidate: Candidate
    row: LayerReport  # its line in the report, filled in as it goes
    work: torch.Tensor  # its weight, in the precision the math runs in
    # its one-shot spectrum, and whether it measures output error on calibration data
    make: Callable[[], tuple[Spectrum, bool]]
    cached: Spectrum | None = None
    # the spectrum measures output error on calibration data (not weight error)
    weighted: bool = False
    # the singular values of the spectrum its factors were cut from, once refit
    sigma: torch.Tensor | None = None

    @property
    def spectrum(self) -> Spectrum:
        if self.cached is None:
            self.cached, self.weighted = self.make()
        return self.cached

    @property
    def name(self) -> str:
        return self.candidate.name


def spectra(candidates: list[Candidate], config: LowRankConfig, moments: dict[str, torch.Tensor],
            rows: list[LayerReport], progress: bool, lazy: bool = False) -> Iterator[Layer]:
    """Each eligible layer's spectrum, by the config's init (plain SVD where no calibration input
    reached it); every candidate gets its row in ``rows``, the dense ones with their reason.
    ``lazy``: each spectrum is computed when first asked for (``moments`` may gain the layer's
    statistics until then)."""
    eligible = sum(c.skip_reason is None for c in candidates)
    with progress_bar(progress and not lazy, eligible, "factorizing") as advance:
        for c in candidates:
            out_f, in_f = c.weight.shape
            dense = out_f * in_f + (0 if c.bias is None else out_f)
            row = LayerReport(c.name, in_f, out_f, None, dense, dense, None, "dense", c.skip_reason)
            rows.append(row)
            if c.skip_reason is not None:
                continue
            w = c.weight.detach()
            if w.device.type == "meta":
                raise PelaError(f"layer {c.name} has no data (meta device); load real weights "
                                "before compressing")
            precision = torch.float64 if w.dtype == torch.float64 else torch.float32
            work = w.to(config.device or w.device, precision)
            layer = Layer(c, row, work, _maker(work, c.name, row, config, moments))
            if not lazy:
                layer.spectrum  # noqa: B018 - computed now, inside the progress bar
                advance(info=c.name)
            yield layer


def _maker(work: torch.Tensor, name: str, row: LayerReport, config: LowRankConfig,
           moments: dict[str, torch.Tensor]) -> Callable[[], tuple[Spectrum, bool]]:
    def make() -> tuple[Spectrum, bool]:
        init, stats = config.init, moments.get(name)
        if init in NEEDS_CALIBRATION and stats is None:
            init = "svd"  # no calibration input reached this layer
        row.init = init
        return INITS[init](work, stats), init in NEEDS_CALIBRATION
    return make


def factorized(layer: Layer, rank: int | None, config: LowRankConfig) -> LowRankLinear | None:
    """The layer's replacement at ``rank`` (else at the config's rule), or None if it stays dense
    (its row says why)."""
    c, row, spectrum = layer.candidate, layer.row, layer.spectrum
    out_f, in_f = c.weight.shape
    reason = None
    if rank is None:
        rank, reason = choose_rank(out_f, in_f, spectrum.sigma, config)
    if reason is not None:
        row.reason = reason
        return None
    return lowrank(layer, spectrum, rank)


def lowrank(layer: Layer, spectrum: Spectrum, rank: int) -> LowRankLinear:
    """The factorized layer cut from ``spectrum`` at ``rank``, its report row filled in."""
    c, row = layer.candidate, layer.row
    out_f, in_f = c.weight.shape
    a, b = spectrum.factors(rank)
    a, b = a.to(c.weight.dtype), b.to(c.weight.dtype)
    if layer.weighted:
        err = tail_error(spectrum.sigma, rank)
    else:
        err = relative_error(layer.work, a, b, spectrum.sigma, rank)
    bias = None if c.bias is None else c.bias.detach()
    new = LowRankLinear.from_factors(a.to(c.weight.device), b.to(c.weight.device), bias)
    new.train(c.module.training)
    row.rank, row.status, row.rel_error = rank, "factorized", float(err)
    row.params_after = rank * (in_f + out_f) + (0 if c.bias is None else out_f)
    return new


def let_go(layer: Layer) -> None:
    """Drop every reference this compression holds to a swapped-out layer's dense weight (its
    report row stays)."""
    c = layer.candidate
    # its shape and dtype, no data
    c.weight = torch.empty(c.weight.shape, dtype=c.weight.dtype, device="meta")
    c.module = c.bias = None
    layer.work = c.weight
    layer.make = _let_go_already


def _let_go_already() -> tuple[Spectrum, bool]:
    raise RuntimeError("this layer's dense weight was let go once its factors were in")
