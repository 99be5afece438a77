"""The three ways `pela.compress` can factorize a model, one class each, picked by the config
(`strategy_for`):

- `OneShot`: every layer cut from its spectrum of the original weights (and, data-aware, the
  original's inputs); `compress` swaps them all in at the end, so a failure leaves the model as it
  was.
- `Sequential` (``sequential=True``): block by block, each layer refit on the inputs the partly
  compressed student gives it (`pela.compression.sequential`) and swapped in on the way; the
  layers the refit cannot reach are left for `compress` to cut one-shot.
- `BlockByBlock` (sequential with a ratio or a rank, ``LowRankConfig.block_by_block``): sequential
  holding one block's statistics and dense layers at a time.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from pela.compression.calibrate import Calibration, input_moments
from pela.compression.config import LowRankConfig
from pela.compression.factors import Layer, let_go, lowrank
from pela.compression.inits import NEEDS_CALIBRATION
from pela.compression.ranks import choose_rank
from pela.compression.sequential import Fit, refit
from pela.errors import PelaError
from pela.linalg import Spectrum

Moments = dict[str, torch.Tensor]


class OneShot:
    """Every layer cut from its own spectrum, each computed as the layers stream by (inside the
    progress bar) and cut before the next, so one layer's spectrum is held at a time."""

    lazy = False  # spectra computed only when first asked for

    def refit(self, model: nn.Module, layers: Iterable[Layer], ranks: dict[str, int],
              config: LowRankConfig, calibration: Calibration | None, moments: Moments,
              progress: bool) -> tuple[Iterable[Layer], set[str]]:
        """The layers, and the names of those this strategy factorized and swapped in itself
        (none here: `compress` cuts them all)."""
        return layers, set()


class Sequential(OneShot):
    """Refit and swap in, block by block, the layers `pela.compression.sequential` can reach. On
    any failure the model is put back as it was."""

    let_go = False  # each dense layer dropped as soon as its factors are in

    def refit(self, model: nn.Module, layers: Iterable[Layer], ranks: dict[str, int],
              config: LowRankConfig, calibration: Calibration | None, moments: Moments,
              progress: bool) -> tuple[Iterable[Layer], set[str]]:
        if calibration is None or calibration.inputs is None:
            raise PelaError("sequential factorization runs the calibration examples again, block "
                            "by block: calibrate with the same config (pela.calibrate(model, data, "
                            "config) keeps them when config.sequential is true)")
        layers = list(layers)
        fits, originals = [], []
        for layer in layers:
            rank = ranks.get(layer.name)
            rank = _rule_rank(layer, config) if rank is None else rank
            if not rank:  # None: the rule leaves it dense; DENSE: the budget went elsewhere
                continue
            c = layer.candidate
            attr = c.name.rsplit(".", 1)[-1]
            if not self.let_go:
                originals.append((c.parent, attr, c.module))
            fits.append(Fit(c.name, rank, self._swap(layer, attr)))
        try:
            return layers, refit(model, fits, calibration.inputs, progress)
        except BaseException:
            for parent, attr, module in originals:
                setattr(parent, attr, module)
            raise

    def _swap(self, layer: Layer, attr: str) -> Callable[[Spectrum, int], None]:
        """What the refit calls with a layer's new spectrum: its factors put in the model."""
        def swap(spectrum: Spectrum, rank: int) -> None:
            # the one-shot spectrum, if any, is not needed any more
            layer.sigma, layer.cached = spectrum.sigma, None
            # refit: whitened on the inputs the student gives it
            layer.weighted, layer.row.init = True, "whiten"
            setattr(layer.candidate.parent, attr, lowrank(layer, spectrum, rank))
            if self.let_go:
                let_go(layer)
        return swap


def _rule_rank(layer: Layer, config: LowRankConfig) -> int | None:
    """The config's rank for the layer (None: it stays dense). Ratio and rank rules need no
    spectrum: block by block, none is computed here."""
    energy = config.resolved_mode()[0] == "energy"
    sigma = layer.spectrum.sigma if energy else torch.empty(0)
    rank, reason = choose_rank(*layer.candidate.weight.shape, sigma, config)
    return None if reason is not None else rank


class BlockByBlock(Sequential):
    """Sequential holding one block's dense layers and statistics at a time: spectra are computed
    only where asked for, and each dense layer is let go as soon as its factors are in, so memory
    holds one block's dense layers beside the factors, not the whole dense model too; a failure
    leaves the blocks before it factorized. Calibration only counted the inputs: the layers the
    refit does not reach get their statistics here, on the inputs they get now."""

    lazy = True
    let_go = True

    def refit(self, model: nn.Module, layers: Iterable[Layer], ranks: dict[str, int],
              config: LowRankConfig, calibration: Calibration | None, moments: Moments,
              progress: bool) -> tuple[Iterable[Layer], set[str]]:
        layers, done = super().refit(model, layers, ranks, config, calibration, moments, progress)
        unseen = [x.candidate for x in layers if x.name not in done and x.name not in moments]
        if unseen and config.init in NEEDS_CALIBRATION:
            moments.update(input_moments(model, unseen, calibration.inputs))
        return layers, done


def strategy_for(config: LowRankConfig) -> OneShot:
    """The strategy the config asks for: block by block, sequential or one-shot."""
    if config.block_by_block:
        return BlockByBlock()
    return Sequential() if config.sequential else OneShot()
