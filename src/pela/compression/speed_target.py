"""A speed the user names (``LowRankConfig.speedup``): the student closest to the original that is
that much faster where it is served, on this device.

The ranks come from a prediction made of this device's measurements: the original's forward pass is
timed once at the serving shape, laid out (`pela.tune_layout`), and the time of each linear product
in it (`pela.utils.products`, cached) taken out; what is left (attention, norms, embeddings,
Python) stays the same in the student. Each factorizable shape's two factors are timed against its
dense weight at a few ranks, in turns, and interpolated between them (time grows with rank). The
search takes the largest fraction of the parameters (allocated across layers by measured
sensitivity when calibration is given, `pela.compression.budget`; one ratio for all without) whose
predicted time is at most the original's divided by the target, a layer whose factors would be no
faster at its rank kept dense, and times the ranks it found to check.

The prediction leaves out what only the whole model shows (twice the calls, caches shared with the
rest), so `SpeedTarget.confirm` then measures: the factors are swapped in and out of the model and
the two timed in turns, laid out alike. Where the student misses the target, or passes it by more
than `SLACK`, what the prediction missed is spread over the factorized layers, the search runs
again and the factors are cut again (at most `CONFIRM_ROUNDS` students); the student kept is the
largest measured to meet the target.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from pela.compression.allocate import max_rank
from pela.compression.budget import DENSE, allocated, probed, uniform_rank
from pela.compression.calibrate import Calibration
from pela.compression.config import LowRankConfig
from pela.compression.factors import Layer, Swaps
from pela.compression.ranks import align_rank
from pela.compression.speed import model_ms
from pela.compression.targets import linear_layers
from pela.errors import PelaError, warn
from pela.layers.storage_order import laid_out
from pela.utils.products import factored_ms, product_ms
from pela.utils.progress import activity, progress_bar

# fractions of a shape's break-even rank its factors are timed at; in between, interpolated
ANCHORS = (1 / 8, 1 / 4, 1 / 2, 3 / 4, 1)
SEARCH_STEPS = 14  # halvings of the fraction of parameters kept: ~1e-4 of the range
CHECK_ROUNDS = 3  # searches at most, each checked by timing the ranks it found
CONFIRM_ROUNDS = 3  # students cut and measured at most
SLACK = 0.05  # a student measured this much faster than asked gives parameters back
TURNS = 5  # times each of the original and the student is measured, in turns
TURN_SECONDS = 0.1  # a turn repeats a fast model's pass until it takes this long (its median)

Shape = tuple[int, int]


@dataclass
class SpeedModel:
    """What a model's time where it is served is made of, on this device: enough to predict a
    student's from its ranks."""

    rows: int  # rows each product multiplies (one decoding step: 1)
    rest_ms: float  # the original's time outside its linear products: the same in the student
    fixed_ms: float  # the linear layers pela does not factorize
    best_ms: dict[Shape, float]  # one product of each factorizable shape, in its faster order
    # per factorizable shape and rank timed: the factors' time / the dense weight's, in turns
    timed: dict[Shape, dict[int, float]]
    dtype: torch.dtype
    device: torch.device
    # what each factorized layer costs in the whole model beyond its products timed alone (twice
    # the calls, caches shared with the rest): learnt from the students measured (`confirm`)
    extra_ms: float = 0.0

    def time(self, shape: Shape, rank: int) -> bool:
        """Time the shape's factors at ``rank`` (cached) unless done; whether it was new."""
        if rank in self.timed[shape]:
            return False
        dense, factors = factored_ms(shape, rank, self.rows, self.dtype, self.device)
        self.timed[shape][rank] = factors / dense
        return True

    def factors_ratio(self, shape: Shape, rank: int) -> float:
        """The factors' time at ``rank`` over the dense weight's, interpolated between the ranks
        timed."""
        points = _rising(sorted(self.timed[shape].items()))
        if rank <= points[0][0]:
            return points[0][1]  # a smaller rank costs at least the calls: no lower
        for (r0, t0), (r1, t1) in zip(points, points[1:]):
            if rank <= r1:
                return t0 + (t1 - t0) * (rank - r0) / (r1 - r0)
        return points[-1][1]

    def original_ms(self, layers: list[Layer]) -> float:
        return self.rest_ms + self.fixed_ms + sum(self.best_ms[_shape(x)] for x in layers)

    def student_ms(self, layers: list[Layer], ranks: dict[str, int]) -> float:
        """The predicted time with these ranks (`DENSE`: the layer kept whole)."""
        return self.total_ms(layers, lambda x: None if ranks[x.name] == DENSE
                             else self.factors_ratio(_shape(x), ranks[x.name]))

    def total_ms(self, layers: list[Layer], ratio: Callable[[Layer], float | None]) -> float:
        """The predicted time with each layer's factors at ``ratio(layer)`` of its dense time
        (None: the layer kept whole)."""
        total = self.rest_ms + self.fixed_ms
        for x in layers:
            r, best = ratio(x), self.best_ms[_shape(x)]
            total += best if r is None else best * r + self.extra_ms
        return total


class SpeedTarget:
    """Ranks for ``config.speedup`` on this device, and the student's speed-up measured."""

    def __init__(self, model: nn.Module, layers: list[Layer], config: LowRankConfig,
                 calibration: Calibration | None, rows: int, progress: bool):
        self.layers, self.config, self.calibration = layers, config, calibration
        self.rows, self.progress = rows, progress
        with laid_out(model, rows):
            self.timing = measure(model, layers, rows, config.align, progress)
        self.least = _least_fraction(layers, config.align)
        self.rule = self.uniform = _ranks_rule(layers, self.timing,
                                               lambda f: _uniform(layers, f, config.align))
        self.model, self.record = model, {}

    def ranks(self, refuse: bool = True) -> dict[str, int]:
        """The ranks of the most parameters predicted to meet the target (else, unless
        ``refuse``, every layer at its smallest rank).

        Raises:
            PelaError: ``refuse``, and the target is out of reach even with every layer at its
                smallest rank.
        """
        timing, layers = self.timing, self.layers
        target_ms = timing.original_ms(layers) / self.config.speedup
        least = self.uniform(self.least)
        if timing.student_ms(layers, least) > target_ms:
            if refuse:
                _out_of_reach(layers, timing, least, self.config.speedup)
            return least  # the fastest there is
        fraction = _searched(layers, timing, self.uniform, target_ms, self.least, self.progress)
        if self.calibration is not None and self.rule is self.uniform:
            weights = probed(self.model, layers, self.config, self.calibration, fraction,
                             self.progress)
            self.rule = _ranks_rule(layers, timing, self._spent(weights))
        if self.rule is not self.uniform:
            fraction = _searched(layers, timing, self.rule, target_ms, self.least, self.progress)
        return self.rule(fraction)

    def confirm(self, ranks: dict[str, int], swaps: Swaps,
                recut: Callable[[dict[str, int]], Swaps]) -> Swaps:
        """Measure the student the swaps (cut at ``ranks``) make against the original; where it
        misses the target, or passes it by more than `SLACK`, learn what the prediction missed,
        search again and ``recut`` (at most `CONFIRM_ROUNDS` students). Returns the swaps of the
        student with the most parameters measured to meet the target (else of the fastest), its
        figures in `record`."""
        target, tried = self.config.speedup, []
        for attempt in range(CONFIRM_ROUNDS):
            predicted = self.predicted()
            measured, student_ms, original_ms = self.measured(swaps)
            tried.append((ranks, measured, {
                "target": target, "predicted": predicted, "measured": measured,
                "measured_ms": [student_ms, original_ms], "serve_rows": self.rows,
                "outside_products_ms": self.timing.rest_ms}))
            if target <= measured <= target * (1 + SLACK) or attempt == CONFIRM_ROUNDS - 1:
                break
            self._learn(measured)
            again = self.ranks(refuse=False)
            if any(again == earlier for earlier, _, _ in tried):
                break  # the prediction, corrected, names a student already measured
            ranks, swaps = again, recut(self.marked(again))
        met = [t for t in tried if t[1] >= target]
        best = max(met, key=lambda t: self._kept(t[0])) if met else max(tried, key=lambda t: t[1])
        if best[0] is not ranks:  # an earlier student: cut again
            swaps = recut(self.marked(best[0]))
        linear = sum(o * i for o, i in map(_shape, self.layers))
        self.record = {**best[2], "students": len(tried), "tried": [
            {"kept": self._kept(r) / linear, "predicted": t["predicted"], "measured": m}
            for r, m, t in tried]}
        if self.record["measured"] < target:
            warn(f"the student measured {self.record['measured']:.2f}× faster here, short of the "
                 f"{target:g}× asked for (predicted {self.record['predicted']:.2f}×): this "
                 "machine's timings moved, or the target is at the edge of what it can reach")
        return swaps

    def predicted(self) -> float:
        """The speed-up the prediction gives the rows as they are (times at their own ranks)."""
        return self.timing.original_ms(self.layers) / self._student_ms()

    def _student_ms(self) -> float:
        """The student's predicted time from its rows (each factorized one timed at its rank)."""
        def ratio(x: Layer) -> float | None:
            r = x.row
            return r.ms_factored / r.ms_dense if r.status == "factorized" and r.ms_dense else None
        return self.timing.total_ms(self.layers, ratio)

    def unconfirmed(self) -> None:
        """The `record` of a student that cannot be cut again (refit block by block): the
        prediction alone."""
        self.record = {"target": self.config.speedup, "predicted": self.predicted(),
                       "measured": None, "serve_rows": self.rows}

    def _learn(self, measured: float) -> None:
        """Spread what the student took beyond its prediction (or less), measured against the
        original, over its factorized layers."""
        missed = self.timing.original_ms(self.layers) / measured - self._student_ms()
        factorized = sum(x.row.status == "factorized" for x in self.layers)
        if factorized:
            self.timing.extra_ms += missed / factorized

    def _kept(self, ranks: dict[str, int]) -> int:
        """The parameters the layers keep at ``ranks``."""
        return sum(o * i if ranks[x.name] == DENSE else ranks[x.name] * (o + i)
                   for x in self.layers for o, i in [_shape(x)])

    def measured(self, swaps: Swaps) -> tuple[float, float, float]:
        """The student's speed-up, and both models' milliseconds: the factors swapped in and out
        of the model, each laid out, timed in turns (`TURNS` each); the model left dense."""
        dense = {name: getattr(parent, attr) for name, (parent, attr, _) in swaps.items()}
        times: dict[str, list[float]] = {"original": [], "student": []}

        def use(which: str) -> None:
            for name, (parent, attr, factors) in swaps.items():
                setattr(parent, attr, factors if which == "student" else dense[name])

        with activity("timing the student against the original"), laid_out(self.model, self.rows):
            try:
                use("student")
                with laid_out(self.model, self.rows):  # the factors too
                    for turn in range(TURNS):
                        for which in times:
                            use(which)
                            times[which].append(model_ms(self.model, self.rows, TURN_SECONDS,
                                                         runs=1, warm=turn == 0))
            finally:
                use("original")
        student, original = (statistics.median(times[w]) for w in ("student", "original"))
        # each turn's ratio, of two times taken one after the other: a machine that slows down
        # for a while slows both
        ratio = statistics.median(o / s for o, s in zip(times["original"], times["student"]))
        return ratio, student, original

    def _spent(self, weights: list[float | None]) -> Callable[[float], dict[str, int]]:
        def spent(fraction: float) -> dict[str, int]:
            try:
                return allocated(self.layers, weights, fraction, self.config.align)
            except PelaError:  # too few parameters to allocate: every layer at its smallest rank
                return _uniform(self.layers, fraction, self.config.align)
        return spent

    def marked(self, ranks: dict[str, int]) -> dict[str, int]:
        """``ranks``, each layer's report row reset to dense and, where it stays dense, why: what
        to cut the factors at."""
        for x in self.layers:
            row = x.row
            row.rank = row.rel_error = row.ms_dense = row.ms_factored = None
            row.status, row.params_after, row.reason = "dense", row.params_before, None
            if ranks[x.name] == DENSE:
                row.reason = ("its factors are predicted no faster here at any rank the speed "
                              "target leaves it")
        return ranks


def measure(model: nn.Module, layers: list[Layer], rows: int, align: int,
            progress: bool) -> SpeedModel:
    """Time the model (as its weights are stored now) and each factorizable shape's factors at
    the `ANCHORS`."""
    names = {x.name for x in layers}
    with activity("timing the model where it is served"):
        whole = model_ms(model, rows)
        linears = linear_layers(model)
        # one product of each shape, in its faster order (timed once, cached)
        ms = {key: min(product_ms(key[0], rows, *key[1:]))
              for key in {_key(c.weight) for c in linears}}
        products = sum(ms[_key(c.weight)] for c in linears)
        fixed = sum(ms[_key(c.weight)] for c in linears if c.name not in names)
    weight = layers[0].candidate.weight
    shapes = sorted({_shape(x) for x in layers})
    best = {_shape(x): ms[_key(x.candidate.weight)] for x in layers}
    timing = SpeedModel(rows, max(0.0, whole - products), fixed, best, {s: {} for s in shapes},
                        weight.dtype, weight.device)
    anchors = [(s, rank) for s in shapes for rank in _anchor_ranks(s, align)]
    with progress_bar(progress, len(anchors), "timing factors") as advance:
        for s, rank in anchors:
            timing.time(s, rank)
            advance(info=f"{s[1]}→{s[0]} at rank {rank}")
    return timing


def _searched(layers: list[Layer], timing: SpeedModel, rule: Callable[[float], dict[str, int]],
              target_ms: float, least: float, progress: bool) -> float:
    """The largest fraction whose ranks ``rule`` gives are predicted to meet ``target_ms``; the
    ranks it finds are timed and the search run again (at most `CHECK_ROUNDS` times) until the
    times at the very ranks chosen confirm it."""
    hi = 1.0
    for _ in range(CHECK_ROUNDS):
        fraction = _largest(lambda f: timing.student_ms(layers, rule(f)) <= target_ms, least, hi)
        ranks = rule(fraction)
        todo = sorted({(_shape(x), ranks[x.name]) for x in layers if ranks[x.name] != DENSE})
        new = False
        with progress_bar(progress, len(todo), "timing the ranks found") as advance:
            for shape, rank in todo:
                new = timing.time(shape, rank) or new
                advance(info=f"{shape[1]}→{shape[0]} at rank {rank}")
        if not new or timing.student_ms(layers, rule(fraction)) <= target_ms:
            return fraction
        hi = fraction  # it does not fit after all: the next search stays below
    return fraction


def _largest(fits: Callable[[float], bool], lo: float, hi: float) -> float:
    """The largest fraction in [lo, hi) that fits, ``fits(lo)`` being known true: time grows with
    the parameters kept."""
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _ranks_rule(layers: list[Layer], timing: SpeedModel,
                ranks: Callable[[float], dict[str, int]]) -> Callable[[float], dict[str, int]]:
    """``ranks``, with every layer whose factors are predicted no faster at its rank kept dense."""
    def rule(fraction: float) -> dict[str, int]:
        chosen = ranks(fraction)
        for x in layers:
            if chosen[x.name] != DENSE and timing.factors_ratio(_shape(x), chosen[x.name]) >= 1:
                chosen[x.name] = DENSE
        return chosen
    return rule


def _key(weight: torch.Tensor) -> tuple[Shape, torch.dtype, torch.device]:
    return tuple(weight.shape), weight.dtype, weight.device


def _shape(layer: Layer) -> Shape:
    return tuple(layer.candidate.weight.shape)


def _anchor_ranks(shape: Shape, align: int) -> list[int]:
    cap = max_rank(*shape, align)
    least = min(align, cap)
    return sorted({max(least, align_rank(round(cap * a), align, up=False)) for a in ANCHORS})


def _rising(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The points with each time at least the one before: a larger rank reads more, so a dip is
    the machine's noise."""
    out, top = [], 0.0
    for rank, t in points:
        top = max(top, t)
        out.append((rank, top))
    return out


def _uniform(layers: list[Layer], fraction: float, align: int) -> dict[str, int]:
    return {x.name: uniform_rank(*_shape(x), fraction, align) for x in layers}


def _least_fraction(layers: list[Layer], align: int) -> float:
    """The fraction of the parameters every layer at its smallest rank keeps."""
    kept = sum(min(align, max_rank(*_shape(x), align)) * sum(_shape(x)) for x in layers)
    return kept / sum(o * i for o, i in map(_shape, layers))


def _out_of_reach(layers: list[Layer], timing: SpeedModel, least: dict[str, int],
                  target: float) -> None:
    original = timing.original_ms(layers)
    best = original / timing.student_ms(layers, least)
    outside = timing.rest_ms + timing.fixed_ms
    raise PelaError(
        f"a {target:g}× speed-up is out of reach on this device: with every layer at its "
        f"smallest rank the model is predicted {best:.2f}× faster ({outside:.3g} of its "
        f"{original:.3g} ms at {timing.rows} rows a product are outside the layers pela "
        "factorizes)")
