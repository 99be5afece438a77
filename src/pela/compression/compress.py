"""Stage 1 of PELA: replace eligible linear layers with low-rank factors, in place.

`compress` runs in three phases: the spectrum of every eligible layer (`pela.compression.factors`),
the rank of each (one rule per layer, or one budget for the model, `pela.compression.budget`), and
the factors, cut by the strategy the config names (one-shot, sequential or block by block:
`pela.compression.strategies`) and swapped in at the end, so a failure halfway leaves the model
untouched (block by block: the blocks before it factorized).
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Iterable

from torch import nn

from pela.compression import speed
from pela.compression.budget import DENSE, budget_ranks
from pela.compression.calibrate import Calibration
from pela.compression.config import LowRankConfig
from pela.compression.factors import Layer, Swaps, factorized, spectra
from pela.compression.inits import NEEDS_CALIBRATION
from pela.compression.report import CompressionReport, LayerReport
from pela.compression.speed_target import SpeedTarget
from pela.compression.strategies import strategy_for
from pela.compression.targets import Candidate, select
from pela.errors import PelaError
from pela.utils.device import resolve_device
from pela.utils.products import release_pool


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def compress(model: nn.Module, config: LowRankConfig | None = None, *,
             calibration: Calibration | None = None, progress: bool = False) -> CompressionReport:
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
    strategy = strategy_for(config)
    _check_moments(candidates, calibration, moments, strategy.lazy)
    rows: list[LayerReport] = []
    # what the speed check times at, found once (a partial forward pass), when first needed
    serve_rows = functools.cache(lambda: config.serve_rows or speed.serving_rows(model))
    # 1. spectra, one layer at a time: each is cut into factors before the next is computed (block
    # by block, only when a layer the sequential refit does not reach needs one)
    layers = spectra(candidates, config, moments, rows, progress, lazy=strategy.lazy)
    # 2. ranks: one rule per layer, or one budget for the model, which needs every spectrum first
    ranks: dict[str, int] = {}
    mode, target = config.resolved_mode()[0], None
    if mode == "param_budget":
        layers = list(layers)
        ranks = budget_ranks(model, layers, config, calibration, progress,
                             _too_slow(serve_rows) if config.speed_check else None)
    elif mode == "speedup":  # before any factor is in: the original is timed whole
        layers = list(layers)
        target = SpeedTarget(model, layers, config, calibration, serve_rows(), progress)
        ranks = target.marked(target.ranks())
    # 3. factors cut at those ranks: the strategy's own (sequential: refit and swapped in, block by
    # block), then the rest, swapped in all at once at the end
    layers, refit = strategy.refit(model, layers, ranks, config, calibration, moments, progress)
    swaps, sigmas = _cut(layers, ranks, refit, config)
    if (config.speed_check and mode != "rank") or target is not None:
        _keep_faster(model, rows, swaps, refit, serve_rows(), progress)
    if target is not None:
        swaps = _confirmed(model, target, layers, ranks, rows, swaps, refit, config,
                           serve_rows(), progress)
    release_pool()  # what the speed check streamed, when it measured
    if not swaps and not refit:
        reasons = "; ".join(sorted({r.reason for r in rows if r.reason}))
        raise PelaError(f"no layer was factorized ({len(rows)} linear layers; reasons: "
                        f"{reasons[:300]})")
    for parent, attr, new in swaps.values():
        setattr(parent, attr, new)
    seconds = time.perf_counter() - start
    return CompressionReport(rows, params_before, count_params(model), seconds, config.to_dict(),
                             sigmas, None if target is None else target.record)


def _check_moments(candidates: list[Candidate], calibration: Calibration | None,
                   moments: dict, lazy: bool) -> None:
    """Refuse statistics that belong to none of the layers to factorize (block by block there are
    none yet: they are taken as the blocks are reached)."""
    if calibration is None or (lazy and calibration.inputs is not None):
        return
    if not any(c.name in moments for c in candidates if c.skip_reason is None):
        raise PelaError("the calibration statistics belong to none of this model's layers "
                        "(calibrated another model?)")


def _cut(layers: Iterable[Layer], ranks: dict[str, int], refit: set[str],
         config: LowRankConfig) -> tuple[Swaps, dict[str, list[float]]]:
    """The factors of every layer not refit, and every layer's singular values for the report."""
    swaps: Swaps = {}
    sigmas: dict[str, list[float]] = {}
    for layer in layers:
        if layer.name in refit:
            sigmas[layer.name] = layer.sigma.float().tolist()
            continue
        sigmas[layer.name] = layer.spectrum.sigma.float().tolist()
        if ranks.get(layer.name) == DENSE:  # the budget went to faster layers (its row says so)
            continue
        new = factorized(layer, ranks.get(layer.name), config)
        if new is not None:
            c = layer.candidate
            swaps[c.name] = (c.parent, c.name.rsplit(".", 1)[-1], new)
    return swaps, sigmas


def _confirmed(model: nn.Module, target: SpeedTarget, layers: list[Layer], ranks: dict[str, int],
               rows: list[LayerReport], swaps: Swaps, refit: set[str], config: LowRankConfig,
               serve_rows: int, progress: bool) -> Swaps:
    """The swaps of a student measured against the speed target, cut again where it fell short
    (`SpeedTarget.confirm`). Layers refit block by block are in already: the prediction is all
    there is."""
    if refit:
        target.unconfirmed()
        return swaps

    def recut(ranks: dict[str, int]) -> Swaps:
        again, _ = _cut(layers, ranks, refit, config)
        _keep_faster(model, rows, again, refit, serve_rows, progress)
        return again

    return target.confirm(ranks, swaps, recut)


def _too_slow(serve_rows: Callable[[], int]) -> Callable[[Layer, int], bool]:
    """Whether a layer's factors at a rank would be no faster than its dense weight at the rows the
    model will serve (`pela.compression.speed`); a slow one's report row says so."""

    def too_slow(layer: Layer, rank: int) -> bool:
        speed.time_row(layer.row, rank, serve_rows(), layer.candidate.weight)
        if not speed.slower(layer.row):
            return False
        speed.respent(layer.row, rank)
        return True

    return too_slow


def _keep_faster(model: nn.Module, rows: list[LayerReport], swaps: Swaps, refit: set[str],
                 serve_rows: int, progress: bool) -> None:
    """Time every factorized layer against its dense weight where the model will serve, and drop
    the swaps of those whose factors are no faster (`pela.compression.speed`). Layers refit
    block by block are in already: their times are reported, not acted on."""
    weights = {name: swap[2].a.weight for name, swap in swaps.items()}
    weights.update({name: model.get_submodule(name).a.weight for name in refit})
    speed.time_layers(rows, weights, serve_rows, progress)
    for row in rows:
        if row.name in swaps and speed.slower(row):
            speed.keep_dense(row)
            del swaps[row.name]


def _checked(model: nn.Module, config: LowRankConfig | None,
             calibration: Calibration | None) -> LowRankConfig:
    """The config to use, once the model, the config and the calibration are known to fit
    together."""
    if not isinstance(model, nn.Module):
        raise PelaError(f"compress expects a torch.nn.Module, got {type(model).__name__}")
    config = config or LowRankConfig()
    if not isinstance(config, LowRankConfig):
        raise PelaError(f"config must be a LowRankConfig, got {type(config).__name__}")
    if config.resolved_mode()[0] == "param_budget" and calibration is None:
        raise PelaError("param_budget spends the budget where measured layer sensitivity says it "
                        "matters, which needs calibration data: pass "
                        "calibration=pela.calibrate(model, data) (CLI: --calib DATA)")
    if config.init in NEEDS_CALIBRATION and calibration is None:
        raise PelaError(f"init={config.init!r} needs calibration data: pass "
                        "calibration=pela.calibrate(model, data) (CLI: --calib DATA)")
    if config.device is not None:
        resolve_device(config.device)
    if calibration is not None:
        calibration.check(model, config)
    return config
