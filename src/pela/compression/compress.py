"""Stage 1 of PELA: replace eligible linear layers with low-rank factors, in place.

`compress` runs in three phases: the spectrum of every eligible layer (`pela.compression.inits`),
the rank of each (one rule per layer, or one budget for the model, `pela.compression.allocate`),
and the swaps, all at the end, so a failure halfway leaves the model untouched.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from pela.compression import speed
from pela.compression.allocate import allocate, max_rank, sensitivities
from pela.compression.calibrate import Calibration, input_moments
from pela.compression.config import LowRankConfig
from pela.compression.inits import INITS, NEEDS_CALIBRATION
from pela.compression.linearized import linearized_sensitivities
from pela.compression.ranks import align_rank, choose_rank, relative_error, tail_error
from pela.compression.report import CompressionReport, LayerReport
from pela.compression.sequential import Fit, refit
from pela.compression.targets import Candidate, select
from pela.errors import PelaError
from pela.layers.lowrank import LowRankLinear
from pela.linalg import Spectrum
from pela.utils.device import resolve_device
from pela.utils.progress import progress_bar


def _allocate_budget(model: nn.Module, layers: list[_Layer], config: LowRankConfig, calibration: Calibration, progress: bool) -> dict[str, int]:
    """Ranks for ``param_budget``: probe each layer's sensitivity at the uniform rank of the same
    size, then allocate."""
    fraction, align = config.param_budget, config.align
    device = next(model.parameters()).device

    # what one ratio for all layers would give, kept in [one step, break-even)
    def uniform_rank(n_out: int, n_in: int) -> int:
        cap = max_rank(n_out, n_in, align)
        return max(min(align, cap), min(align_rank(math.floor(fraction * n_out * n_in / (n_out + n_in)), align, up=False), cap))

    def delta(work: torch.Tensor, spectrum: Spectrum, rank: int) -> Callable[[], torch.Tensor]:
        def make() -> torch.Tensor:
            a, b = spectrum.factors(rank)
            return (b.to(work.dtype) @ a.to(work.dtype) - work).to(device)
        return make

    shapes = [tuple(x.candidate.weight.shape) for x in layers]
    reference = [uniform_rank(*shape) for shape in shapes]
    probes = [(x.candidate.name, x.candidate.module, delta(x.work, x.spectrum, r), float((x.spectrum.sigma.double() ** 2)[r:].sum()))
              for x, r in zip(layers, reference)]
    with progress_bar(progress, len(probes), "probing sensitivity") as advance:
        measure = linearized_sensitivities if config.sensitivity == "gradient" else sensitivities
        weights = measure(model, probes, calibration.probe, advance)
    # layers the probes cannot see keep these
    ranks = {x.candidate.name: r for x, r in zip(layers, reference)}
    free = [i for i, w in enumerate(weights) if w is not None]
    budget = int(fraction * sum(o * i for o, i in shapes)) - sum(reference[i] * sum(shapes[i]) for i, w in enumerate(weights) if w is None)
    chosen = allocate([shapes[i] for i in free], [layers[i].spectrum.sigma for i in free], budget, align, [weights[i] for i in free])
    ranks.update({layers[i].candidate.name: r for i, r in zip(free, chosen)})
    return ranks


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def compress(model: nn.Module, config: LowRankConfig | None = None, *, calibration: Calibration | None = None,
             progress: bool = False) -> CompressionReport:
    """Factorize the eligible linear layers of ``model`` in place and report what was done.

    Args:
        model: any `nn.Module`; its linear layers (`pela.arch.LINEAR_LIKE`) are candidates.
        config: what to compress and how; defaults to ``LowRankConfig()`` (k=2, ranks aligned to 8).
        calibration: input statistics from `pela.calibrate`, needed by ``init="whiten"``.
        progress: show a progress bar over layers on stderr.

    Returns:
        A `CompressionReport` with one row per linear layer (factorized or dense, with the reason).

    Raises:
        PelaError: the model is already compressed, has no linear layers, a pattern matches nothing,
            the init needs calibration that was not given, or no layer could be factorized.

    >>> import torch.nn as nn, pela
    >>> net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    >>> pela.compress(net, pela.LowRankConfig(ratio=2)).params_after < 2 * 64 * 65
    True
    """
    config = _checked(model, config, calibration)
    start = time.perf_counter()
    params_before = count_params(model)
    candidates = select(model, config)
    moments = dict(calibration.moments) if calibration is not None else {}
    lean = config.block_by_block
    if calibration is not None and not (lean and calibration.inputs is not None) \
            and not any(c.name in moments for c in candidates if c.skip_reason is None):
        raise PelaError("the calibration statistics belong to none of this model's layers (calibrated another model?)")
    rows: list[LayerReport] = []
    # 1. spectra, one layer at a time: each is cut into factors before the next is computed (block
    # by block,
    # only when a layer the sequential refit does not reach needs one)
    layers: Iterable[_Layer] = _spectra(candidates, config, moments, rows, progress, lazy=lean)
    # 2. ranks: one rule per layer, or one budget for the model, which needs every spectrum first
    ranks: dict[str, int] = {}
    if config.resolved_mode()[0] == "param_budget":
        layers = list(layers)
        ranks = _allocate_budget(model, layers, config, calibration, progress)
    # 3. factors cut at those ranks, swapped in all at once at the end (sequentially: block by
    # block, refit on the way)
    refit: set[str] = set()
    if config.sequential:
        layers = list(layers)
        refit = _sequential(model, layers, ranks, config, calibration, progress)
        unseen = [x.candidate for x in layers if x.candidate.name not in refit and x.candidate.name not in moments]
        # the layers the refit did not reach, on the inputs they get now
        if lean and unseen and config.init in NEEDS_CALIBRATION:
            moments.update(input_moments(model, unseen, calibration.inputs))
    swaps: dict[str, tuple[nn.Module, str, LowRankLinear]] = {}
    sigmas: dict[str, list[float]] = {}
    for layer in layers:
        if layer.candidate.name in refit:
            sigmas[layer.candidate.name] = layer.sigma.float().tolist()
            continue
        sigmas[layer.candidate.name] = layer.spectrum.sigma.float().tolist()
        new = _factorized(layer, ranks.get(layer.candidate.name), config)
        if new is not None:
            c = layer.candidate
            swaps[c.name] = (c.parent, c.name.rsplit(".", 1)[-1], new)
    if config.speed_check and config.resolved_mode()[0] != "rank":
        _keep_faster(model, rows, swaps, refit, config, progress)
    if not swaps and not refit:
        reasons = sorted({r.reason for r in rows if r.reason})
        raise PelaError(f"no layer was factorized ({len(rows)} linear layers; reasons: {'; '.join(reasons)[:300]})")
    for parent, attr, new in swaps.values():
        setattr(parent, attr, new)
    return CompressionReport(rows, params_before, count_params(model), time.perf_counter() - start, config.to_dict(), sigmas)


def _keep_faster(model: nn.Module, rows: list[LayerReport], swaps: dict[str, tuple], refit: set[str],
                 config: LowRankConfig, progress: bool) -> None:
    """Time every factorized layer against its dense weight where the model will serve, and drop
    the swaps of those whose factors are no faster (`pela.compression.speed`). Layers refit
    block by block are in already: their times are reported, not acted on."""
    weights = {name: swap[2].a.weight for name, swap in swaps.items()}
    weights.update({name: model.get_submodule(name).a.weight for name in refit})
    serve_rows = config.serve_rows or speed.serving_rows(model)
    speed.time_layers(rows, weights, serve_rows, progress)
    for row in rows:
        if row.name in swaps and speed.slower(row):
            speed.keep_dense(row)
            del swaps[row.name]


def _sequential(model: nn.Module, layers: list[_Layer], ranks: dict[str, int], config: LowRankConfig,
                calibration: Calibration, progress: bool) -> set[str]:
    """Refit and swap in, block by block, the layers `pela.compression.sequential` can reach; the
    names of those done (the others are factorized one-shot by the caller). On any failure the model
    is put back as it was, except block by block (``config.block_by_block``): there each dense layer
    is let go as soon as its factors are in, so that memory holds one block's dense layers beside
    the factors, not the whole dense model too, and a failure leaves the blocks before it
    factorized."""
    if calibration.inputs is None:
        raise PelaError("sequential factorization runs the calibration examples again, block by block: calibrate with the "
                        "same config (pela.calibrate(model, data, config) keeps them when config.sequential is true)")
    fits, originals = [], []
    for layer in layers:
        c = layer.candidate
        rank = ranks.get(c.name)
        # ratio and rank rules need no spectrum: block by block, none is computed here
        if rank is None:
            sigma = layer.spectrum.sigma if config.resolved_mode()[0] == "energy" else torch.empty(0)
            rank, reason = choose_rank(*c.weight.shape, sigma, config)
            if reason is not None:
                continue
        attr = c.name.rsplit(".", 1)[-1]
        if not config.block_by_block:
            originals.append((c.parent, attr, c.module))

        def swap(spectrum: Spectrum, rank: int, layer: _Layer = layer, attr: str = attr) -> None:
            # the one-shot spectrum, if any, is not needed any more
            layer.sigma, layer.cached = spectrum.sigma, None
            # refit: whitened on the inputs the student gives it
            layer.weighted, layer.row.init = True, "whiten"
            setattr(layer.candidate.parent, attr, _lowrank(layer, spectrum, rank))
            if config.block_by_block:
                _let_go(layer)

        fits.append(Fit(c.name, rank, swap))
    try:
        return refit(model, fits, calibration.inputs, progress)
    except BaseException:
        for parent, attr, module in originals:
            setattr(parent, attr, module)
        raise


def _let_go(layer: _Layer) -> None:
    """Drop every reference this compression holds to a swapped-out layer's dense weight (its report
    row stays)."""
    c = layer.candidate
    # its shape and dtype, no data
    c.weight = torch.empty(c.weight.shape, dtype=c.weight.dtype, device="meta")
    c.module = c.bias = None
    layer.work = c.weight
    layer.make = _let_go_already


def _let_go_already() -> tuple[Spectrum, bool]:
    raise RuntimeError("this layer's dense weight was let go once its factors were in")


def _checked(model: nn.Module, config: LowRankConfig | None, calibration: Calibration | None) -> LowRankConfig:
    """The config to use, once the model, the config and the calibration are known to fit
    together."""
    if not isinstance(model, nn.Module):
        raise PelaError(f"compress expects a torch.nn.Module, got {type(model).__name__}")
    config = config or LowRankConfig()
    if not isinstance(config, LowRankConfig):
        raise PelaError(f"config must be a LowRankConfig, got {type(config).__name__}")
    if config.resolved_mode()[0] == "param_budget" and calibration is None:
        raise PelaError("param_budget spends the budget where measured layer sensitivity says it matters, which needs calibration "
                        "data: pass calibration=pela.calibrate(model, data) (CLI: --calib DATA)")
    if config.init in NEEDS_CALIBRATION and calibration is None:
        raise PelaError(f"init={config.init!r} needs calibration data: pass calibration=pela.calibrate(model, data) "
                        "(CLI: --calib DATA)")
    if config.device is not None:
        resolve_device(config.device)
    if calibration is not None:
        calibration.check(model, config)
    return config


@dataclass
class _Layer:
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


def _spectra(candidates: list[Candidate], config: LowRankConfig, moments: dict[str, torch.Tensor], rows: list[LayerReport],
             progress: bool, lazy: bool = False) -> Iterator[_Layer]:
    """Each eligible layer's spectrum, by the config's init (plain SVD where no calibration input
    reached it); every candidate gets its row in ``rows``, the dense ones with their reason.
    ``lazy``: each spectrum is computed when first asked for (``moments`` may gain the layer's
    statistics until then)."""

    def maker(work: torch.Tensor, name: str, row: LayerReport) -> Callable[[], tuple[Spectrum, bool]]:
        def make() -> tuple[Spectrum, bool]:
            init, stats = config.init, moments.get(name)
            if init in NEEDS_CALIBRATION and stats is None:
                init = "svd"  # no calibration input reached this layer
            row.init = init
            return INITS[init](work, stats), init in NEEDS_CALIBRATION
        return make

    with progress_bar(progress and not lazy, sum(c.skip_reason is None for c in candidates), "factorizing") as advance:
        for c in candidates:
            out_f, in_f = c.weight.shape
            dense = out_f * in_f + (0 if c.bias is None else out_f)
            row = LayerReport(c.name, in_f, out_f, None, dense, dense, None, "dense", c.skip_reason)
            rows.append(row)
            if c.skip_reason is not None:
                continue
            w = c.weight.detach()
            if w.device.type == "meta":
                raise PelaError(f"layer {c.name} has no data (meta device); load real weights before compressing")
            work = w.to(config.device or w.device, torch.float64 if w.dtype == torch.float64 else torch.float32)
            layer = _Layer(c, row, work, maker(work, c.name, row))
            if not lazy:
                layer.spectrum  # noqa: B018 - computed now, inside the progress bar
                advance(info=c.name)
            yield layer


def _factorized(layer: _Layer, rank: int | None, config: LowRankConfig) -> LowRankLinear | None:
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
    return _lowrank(layer, spectrum, rank)


def _lowrank(layer: _Layer, spectrum: Spectrum, rank: int) -> LowRankLinear:
    """The factorized layer cut from ``spectrum`` at ``rank``, its report row filled in."""
    c, row = layer.candidate, layer.row
    out_f, in_f = c.weight.shape
    a, b = spectrum.factors(rank)
    a, b = a.to(c.weight.dtype), b.to(c.weight.dtype)
    err = tail_error(spectrum.sigma, rank) if layer.weighted else relative_error(layer.work, a, b, spectrum.sigma, rank)
    new = LowRankLinear.from_factors(a.to(c.weight.device), b.to(c.weight.device), None if c.bias is None else c.bias.detach())
    new.train(c.module.training)
    row.rank, row.status, row.rel_error = rank, "factorized", float(err)
    row.params_after = rank * (in_f + out_f) + (0 if c.bias is None else out_f)
    return new
