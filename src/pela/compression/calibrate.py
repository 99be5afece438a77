"""Calibration for data-aware factorization: each eligible layer's input second moment
``E[x xᵀ]``.

Plain SVD minimizes the error in a layer's *weights*; what matters is the error in its *outputs*
on real inputs, ``E‖(W − BA)x‖² = tr((W − BA) C (W − BA)ᵀ)`` with ``C = E[x xᵀ]``. One pass over a
few hundred examples gives ``C`` for every layer `pela.compress` would factorize: forward pre-hooks
add ``XᵀX`` of each batch to a running sum (float32 over a few thousand inputs, then folded into a
float64 total), so no activation is ever stored. Padding tokens (where the batch has an
``attention_mask``) are left out, since they are not inputs the model serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from pela import arch
from pela.compression.config import LowRankConfig
from pela.compression.targets import select
from pela.data.collate import Collator
from pela.data.inputs import as_dataset
from pela.errors import PelaError, warn
from pela.features import real_tokens
from pela.utils.device import model_device
from pela.utils.progress import progress_iter


@dataclass
class Calibration:
    """Input statistics per layer name, as `pela.compress(..., calibration=...)` takes them, with
    the config and the layers they were taken for (`check`)."""

    moments: dict[str, torch.Tensor]  # layer -> (in × in) float64 E[x xᵀ]
    tokens: dict[str, int]  # input vectors each layer saw
    samples: int  # examples run through the model
    # a few of the examples' batches (on CPU), to measure layer sensitivities for rank allocation
    probe: list[dict[str, Any]]
    # every batch (on CPU), kept when the config factorizes sequentially
    inputs: list[dict[str, Any]] | None = None
    config: LowRankConfig | None = None  # what it was taken for (None: made by hand, not checked)
    # the layers it was taken on: name -> weight shape
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)

    def check(self, model: nn.Module, config: LowRankConfig) -> None:
        """Refuse, in one line, to compress with a calibration taken another way or on another
        model: the way (one-shot, sequential, block by block) decides what was gathered, and every
        layer the config factorizes must be one it was taken on, of the same shape."""
        if self.config is None:
            return
        for setting in ("sequential", "block_by_block"):
            taken, wanted = getattr(self.config, setting), getattr(config, setting)
            if taken != wanted:
                raise PelaError(f"this calibration was taken with {setting}={taken} and the model "
                                f"is compressed with {setting}={wanted}: calibrate with the config "
                                "you compress with")
        shapes = {c.name: tuple(c.weight.shape) for c in select(model, config)
                  if c.skip_reason is None}
        missing = [name for name in shapes if name not in self.layers]
        if missing and len(missing) == len(shapes):
            raise PelaError("this calibration was taken on another model: none of the "
                            f"{len(shapes)} layers to factorize is one of its {len(self.layers)} "
                            "(calibrated another model?)")
        if missing:
            raise PelaError(f"this calibration was not taken on layer {missing[0]!r} (and "
                            f"{len(missing) - 1} more), which the config factorizes: calibrate "
                            "with the config you compress with")
        other = next((name for name, shape in shapes.items() if self.layers[name] != shape), None)
        if other is not None:
            raise PelaError(f"this calibration was taken on another model: {other} is "
                            f"{self.layers[other]} there and {shapes[other]} here")


@torch.no_grad()
def calibrate(model: nn.Module, data: Dataset, config: LowRankConfig | None = None, *,
              collate_fn: Callable | None = None, samples: int = 512, batch_size: int = 16,
              probe_samples: int = 32, seed: int = 0, progress: bool = False) -> Calibration:
    """Run ``samples`` seeded examples of ``data`` through ``model`` and collect each eligible
    layer's ``E[x xᵀ]``.

    Where the dataset knows its examples' lengths (text), they run in batches of similar lengths,
    and so do the probe's, so that little of each pass is spent on padding.

    Args:
        model: the original (uncompressed) model.
        data: examples as `pela.load_dataset` yields them (labels are ignored).
        config: selects the layers, as `pela.compress` would; default ``LowRankConfig()``. With
            ``sequential=True``, every batch is kept (on the CPU) for `pela.compress` to run again;
            with a ratio or a rank as well (``config.block_by_block``), no statistics are gathered
            here at all: `pela.compress` takes each block's when it reaches it, so that only one
            block's are ever held.
        collate_fn: turns examples into model inputs; default `pela.data.collate.Collator` with
            the model's own tokenizer or image transform.
        samples: how many examples to use (all of ``data`` if it has fewer).
        probe_samples: how many of them to keep for `pela.compression.allocate.sensitivities`
            (``param_budget``): each layer is probed on these. Probing is most of the time
            data-aware compression takes, and its cost grows with this number; fewer are faster
            and allocate worse (docs/BENCHMARKS.md measures both).

    Raises:
        PelaError: no data, or a forward pass reaches none of the layers to factorize.
    """
    data = as_dataset(data)  # a datasets.Dataset, a list of texts or of (text, label) pairs
    _check_sizes(data, samples, batch_size, probe_samples)
    config = config or LowRankConfig()
    layers = [c for c in select(model, config) if c.skip_reason is None]
    if not layers:
        raise PelaError("no layer to factorize, so nothing to calibrate")
    n = min(samples, len(data))
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    idx = order[:n].sort().values.tolist()
    collate_fn = collate_fn or Collator(model)
    loader = _loader(data, idx, batch_size, collate_fn)
    # every layer's probe runs these
    probe_loader = _loader(data, idx[:probe_samples], batch_size, collate_fn)
    probe = [{k: v for k, v in b.items() if k != "labels"} for b in probe_loader]
    inputs: list[dict[str, Any]] | None = [] if config.sequential else None
    # block by block, the batches are all compression needs (it takes each block's statistics
    # when it gets there): the pass only counts each layer's inputs
    moments, counts = _run_moments(model, layers, loader, inputs, progress,
                                   count_only=config.block_by_block)
    _warn_short(layers, counts)
    shapes = {c.name: tuple(c.weight.shape) for c in layers}
    return Calibration(moments, counts, n, probe, inputs, config, shapes)


def _check_sizes(data: Dataset, samples: int, batch_size: int, probe_samples: int) -> None:
    if samples < 1:
        raise PelaError(f"calibration needs at least 1 sample, got samples={samples}")
    if probe_samples < 0:
        raise PelaError(f"probe_samples must be >= 0, got {probe_samples}")
    if batch_size < 1:
        raise PelaError(f"calibration batch size must be >= 1, got {batch_size}")
    if len(data) == 0:
        raise PelaError("calibration data is empty")


def _loader(data: Dataset, idx: list[int], batch_size: int, collate_fn: Callable) -> DataLoader:
    """Batches of ``data[idx]``; text in batches of similar lengths, which spend less of every pass
    on padding."""
    lengths = getattr(data, "lengths", None)
    if lengths is not None:
        idx = sorted(idx, key=lambda i: lengths[i])
    return DataLoader(Subset(data, idx), batch_size=batch_size, collate_fn=collate_fn)


def _warn_short(layers: list[Any], counts: dict[str, int]) -> None:
    """Warn of the layer that saw the fewest input vectors for its width, if fewer than it."""
    short = [c for c in layers if 0 < counts.get(c.name, 0) < c.weight.shape[1]]
    if not short:
        return
    worst = min(short, key=lambda c: counts[c.name] / c.weight.shape[1])
    warn(f"calibration saw {counts[worst.name]} input vectors for {worst.name}, which has "
         f"{worst.weight.shape[1]} inputs: its statistics are rank-deficient and are damped; more "
         "calibration samples give better factors")


def input_moments(model: nn.Module, layers: list[Any],
                  batches: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """``E[x xᵀ]`` of the inputs ``layers`` (`pela.compression.targets.Candidate`) get when
    ``model`` runs ``batches``."""
    return _run_moments(model, layers, batches, None, False)[0] if layers else {}


def _run_moments(model: nn.Module, layers: list[Any], batches: Any,
                 keep: list[dict[str, Any]] | None, progress: bool,
                 count_only: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Each layer's ``E[x xᵀ]`` (none with ``count_only``) and input count over ``batches`` (each
    batch also appended to ``keep``, when given)."""
    stats = _Moments(count_only)
    handles = [c.module.register_forward_pre_hook(stats.hook(c.name)) for c in layers]
    head = arch.vocabulary_head(model)
    # its logits are the pass's largest tensor
    if head is not None and not any(c.module is head for c in layers):
        handles.append(head.register_forward_pre_hook(_stop))
    was_training = model.training
    model.eval()
    device = model_device(model)
    try:
        for batch in progress_iter(progress, batches, "calibrating"):
            batch = {k: v for k, v in batch.items() if k != "labels"}
            if keep is not None:
                keep.append(batch)
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            stats.new_batch(batch.get("attention_mask"))
            try:
                arch.forward(model, batch)
            except _Reached:
                pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not stats.counts:
        raise PelaError("the calibration forward passes reached none of the layers to factorize")
    return stats.result()


class _Reached(Exception):
    """Raised by a hook once a batch's pass has given every input the first batch's pass gave."""


def _stop(module: nn.Module, args: Any) -> None:
    raise _Reached


class _Moments:
    """Running ``XᵀX`` of each layer's inputs (float64), one per distinct input: layers that read
    the very same tensor (q, k and v) share one sum, so memory grows with the inputs, not the
    layers."""

    FOLD_TOKENS = 4096  # input vectors summed in float32 before the sum joins the float64 total

    def __init__(self, count_only: bool = False) -> None:
        self.count_only = count_only
        self.sums: dict[str, torch.Tensor] = {}  # owner layer -> running XᵀX (float64)
        # owner layer -> XᵀX of the batches since the last fold (float32)
        self.partial: dict[str, torch.Tensor] = {}
        self.pending: dict[str, int] = {}  # input vectors in the partial sum
        self.counts: dict[str, int] = {}
        self.owner: dict[str, str] = {}  # layer -> the layer whose statistics it shares
        # the latest input added and its layer: a layer reading that very tensor next (k and v
        # after q) shares its sum; only the latest is kept alive, so a pass never holds more than
        # one layer's input on top of the model's own
        self.last: tuple[str, torch.Tensor] | None = None
        # the batch's attention mask: padding is no input the model serves
        self.mask: torch.Tensor | None = None
        self.calls: list[str] = []  # this batch's hooked calls, in order
        self.first: list[str] | None = None  # the first batch's

    def new_batch(self, mask: torch.Tensor | None) -> None:
        if self.calls and self.first is None:
            # the first pass's calls, in order: later passes stop after the same last one
            self.first = self.calls
        self.mask, self.last, self.calls = mask, None, []

    def hook(self, name: str) -> Callable:
        def pre_hook(module: nn.Module, args: Any) -> None:
            self.calls.append(name)
            self._add(name, args)
            if self._all_in(name):
                # every layer's input of this batch is in: the rest of the model (a language
                # model's logits, the largest tensor of the pass) need not be computed
                raise _Reached

        return pre_hook

    def _all_in(self, name: str) -> bool:
        """Whether ``name``'s call ends this batch's calls as it ended the first batch's."""
        first = self.first
        return (first is not None and name == first[-1] and len(self.calls) == len(first)
                and set(self.calls) >= set(first))

    def _add(self, name: str, args: Any) -> None:
        """Add the input in ``args`` to ``name``'s statistics (or to the layer's it shares them
        with)."""
        x = args[0] if args else None
        if not torch.is_tensor(x):
            return
        first = self.last[0] if self.last is not None and self.last[1] is x else None
        if first is not None and self.owner.setdefault(name, first) == first:
            return  # the very input of a layer before it: one XᵀX serves both
        if self.owner.setdefault(name, name) != name:
            raise RuntimeError(f"calibration: {name} read the same input as {self.owner[name]} "
                               "in one batch and not in another")
        self.last = (name, x)
        x = real_tokens(x, self.mask).float()
        if self.count_only:
            self.counts[name] = self.counts.get(name, 0) + x.shape[0]
            return
        if name in self.partial:
            self.partial[name].addmm_(x.T, x)
        else:
            self.partial[name] = x.T @ x
        self.counts[name] = self.counts.get(name, 0) + x.shape[0]
        self.pending[name] = self.pending.get(name, 0) + x.shape[0]
        if self.pending[name] >= self.FOLD_TOKENS:
            self._fold(name)

    def _fold(self, name: str) -> None:
        """Add the float32 partial sum to the float64 total (converting every batch's sum took as
        long as computing it)."""
        partial = self.partial.pop(name).double()
        self.sums[name] = partial if name not in self.sums else self.sums[name].add_(partial)
        self.pending[name] = 0

    def result(self) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """``E[x xᵀ]`` and input vectors seen per layer; layers sharing an input share the same
        matrix object."""
        for name in list(self.partial):
            self._fold(name)
        moments = {k: v / self.counts[k] for k, v in self.sums.items()}
        owners = self.owner.items()
        return ({name: moments[first] for name, first in owners if first in moments},
                {name: self.counts[first] for name, first in owners})
