"""What to compress and how: a frozen, JSON-serializable config.

The config says *what the user asked for*; values resolved from it (the rank of each layer, the
exclusions actually applied) go into the report, never back into the config.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from pela.compression.inits import INITS, NEEDS_CALIBRATION
from pela.errors import PelaError, warn

RANK_RULES = ("ratio", "rank", "energy", "param_budget", "speedup")
SENSITIVITIES = ("replay", "gradient")


def _check_regexes(field_name: str, patterns: Any) -> tuple[str, ...]:
    if isinstance(patterns, str):
        patterns = (patterns,)
    try:
        patterns = tuple(patterns)
    except TypeError:
        raise PelaError(
            f"{field_name} must be a list of regular expressions, got {patterns!r}"
        ) from None
    for p in patterns:
        if not isinstance(p, str):
            raise PelaError(f"{field_name} must hold strings, got {p!r}")
        try:
            re.compile(p)
        except re.error as e:
            raise PelaError(
                f"{field_name} pattern {p!r} is not a valid regular expression: {e}"
            ) from None
    return patterns


def _speed_check_default() -> bool:
    return os.environ.get("PELA_SPEED_CHECK", "1") != "0"


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class LowRankConfig:
    """How `pela.compress` factorizes a model.

    Give at most one of ``ratio``, ``rank``, ``energy``, ``param_budget`` and ``speedup``; with
    none, ``ratio=2``.

    Args:
        ratio: compression ratio k of each layer; rank ``r = floor(m·n / (k·(m+n)))`` (PELA).
        rank: one explicit rank for every layer (capped at the layer's full rank).
        energy: keep the fewest singular values holding this fraction of ``Σσ²``, in (0, 1].
        param_budget: keep this fraction, in (0, 1), of the factorizable layers' weight parameters,
            with ranks *allocated across layers* to minimize the total error
            (`pela.compression.allocate`)
            instead of one ratio for all. ``param_budget=0.5`` is about the size of ``ratio=2``.
        speedup: make the model this many times faster where it is served (``serve_rows``), as
            predicted from this device's measured products (`pela.compression.speed_target`): the
            most parameters whose predicted time meets it, allocated across layers like
            ``param_budget`` when calibration is given, else one ratio for all.
        align: round ranks to a multiple of this (8 suits GPU tensor cores; 1 = exact ranks).
            Rounding keeps the promise: down for ``ratio``/``rank``, up for ``energy``.
        include: regexes (``re.search`` on the module name); if given, only matching layers are
            candidates, and they override the default exclusions.
        exclude: regexes of layers to leave dense. ``None`` applies the architecture defaults
            (`pela.arch.DEFAULT_EXCLUDE`); a list replaces them.
        min_features: layers with fewer outputs (or inputs) than this stay dense.
        init: how factors are initialized; ``"svd"`` is truncated SVD split as ``B = UΣ½, A =
            Σ½Vᵀ``; ``"whiten"`` minimizes the error of each layer's outputs on calibration inputs
            instead of its weights, and needs ``pela.compress(...,
            calibration=pela.calibrate(...))``.
        sequential: with ``init="whiten"``, factorize block by block in depth order, each layer fit
            to reproduce the original's outputs from the inputs the already compressed layers give
            it (`pela.compression.sequential`); ranks are chosen first, as without it.
        sensitivity: how ``param_budget`` measures what each layer's error costs the model:
            ``"replay"`` perturbs one layer at a time and re-runs the blocks after it (exact);
            ``"gradient"`` linearizes the block features and reads every layer's cost from a few
            backward passes (`pela.compression.linearized`), far faster for deep models.
        device: where to run the factorization math (default: each layer's own device).
        speed_check: leave dense every layer whose two factors this device multiplies no faster
            than its dense weight (`pela.compression.speed`: both timed once, cached); not with an
            explicit ``rank``; always with ``speedup``. On by default; ``PELA_SPEED_CHECK=0``
            turns the default off.
        serve_rows: the rows a product multiplies where the model will run, for the speed check:
            1 decodes a token; batch × tokens reads a batch. Default: 1 for a causal language
            model, else the tokens of a batch of 32 examples.

    >>> LowRankConfig(ratio=3, align=1).resolved_mode()
    ('ratio', 3)
    """

    ratio: float | None = None
    rank: int | None = None
    energy: float | None = None
    param_budget: float | None = None
    speedup: float | None = None
    align: int = 8
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] | None = None
    min_features: int = 10
    init: str = "svd"
    sequential: bool = False
    sensitivity: str = "replay"
    device: str | None = None
    speed_check: bool = dataclasses.field(default_factory=lambda: _speed_check_default())
    serve_rows: int | None = None

    def __post_init__(self) -> None:
        given = [n for n in RANK_RULES if getattr(self, n) is not None]
        if len(given) > 1:
            raise PelaError(
                f"give only one of ratio, rank, energy, param_budget and speedup; got "
                f"{', '.join(given)}"
            )
        if self.ratio is not None:
            if not _is_number(self.ratio) or not math.isfinite(self.ratio) or self.ratio <= 1:
                raise PelaError(
                    f"ratio must be a finite number > 1 (k=2 halves each layer), got {self.ratio!r}"
                )
        if self.rank is not None:
            if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
                raise PelaError(f"rank must be an integer >= 1, got {self.rank!r}")
        if self.energy is not None:
            if not _is_number(self.energy) or not (0 < self.energy <= 1):
                raise PelaError(f"energy must be a fraction in (0, 1], got {self.energy!r}")
        if self.param_budget is not None:
            if not _is_number(self.param_budget) or not (0 < self.param_budget < 1):
                raise PelaError(
                    f"param_budget must be a fraction in (0, 1) of the factorizable parameters, "
                    f"got {self.param_budget!r}"
                )
        if self.speedup is not None:
            if not _is_number(self.speedup) or not math.isfinite(self.speedup) or self.speedup <= 1:
                raise PelaError(f"speedup must be a finite number > 1 (times faster than the "
                                f"original), got {self.speedup!r}")
        if not isinstance(self.align, int) or isinstance(self.align, bool) or self.align < 1:
            raise PelaError(f"align must be an integer >= 1, got {self.align!r}")
        if not isinstance(self.min_features, int) or self.min_features < 0:
            raise PelaError(f"min_features must be an integer >= 0, got {self.min_features!r}")
        if self.init not in INITS:
            raise PelaError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.sensitivity not in SENSITIVITIES:
            raise PelaError(
                f"sensitivity must be one of {', '.join(SENSITIVITIES)}, got {self.sensitivity!r}"
            )
        if not isinstance(self.sequential, bool):
            raise PelaError(f"sequential must be true or false, got {self.sequential!r}")
        if self.sequential and self.init not in NEEDS_CALIBRATION:
            raise PelaError(
                "sequential factorization fits layers on calibration inputs: it needs a "
                f"calibrated init ({', '.join(sorted(NEEDS_CALIBRATION))}), not init={self.init!r}"
            )
        if not isinstance(self.speed_check, bool):
            raise PelaError(f"speed_check must be true or false, got {self.speed_check!r}")
        rows = self.serve_rows
        if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 1):
            raise PelaError(f"serve_rows must be an integer >= 1, got {rows!r}")
        object.__setattr__(self, "include", _check_regexes("include", self.include))
        if self.exclude is not None:
            object.__setattr__(self, "exclude", _check_regexes("exclude", self.exclude))

    def resolved_mode(self) -> tuple[str, float | int]:
        """The rank rule in force: ``(name, value)``, defaulting to ``("ratio", 2)``."""
        for name in RANK_RULES:
            if getattr(self, name) is not None:
                return name, getattr(self, name)
        return "ratio", 2

    @property
    def block_by_block(self) -> bool:
        """Whether calibration and compression run block by block, holding one block's statistics at
        a time: sequential factorization with a rank rule that needs no spectrum of the whole model
        (a ratio or a rank; a parameter budget is spent across every layer's spectrum, an energy
        fraction reads the one-shot one). Each dense layer is let go as soon as its factors are in,
        so a failure midway leaves the blocks before it factorized (the other ways put the model
        back as it was)."""
        return self.sequential and self.resolved_mode()[0] in ("ratio", "rank")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["include"] = list(self.include)
        d["exclude"] = None if self.exclude is None else list(self.exclude)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LowRankConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            warn(f"ignoring unknown LowRankConfig keys {unknown} (written by a newer pela?)")
        return cls(**{k: v for k, v in d.items() if k in known})
