"""The result of `pela.compress`: one row per linear layer, and totals."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LayerReport:
    name: str
    in_features: int
    out_features: int
    rank: int | None  # None: left dense
    params_before: int
    params_after: int
    # ||W - BA||_F / ||W||_F (svd); ||(W - BA)S||_F / ||WS||_F, outputs on calibration data (whiten)
    rel_error: float | None
    status: str  # "factorized" or "dense"
    reason: str | None = None  # why it stayed dense
    # the initialization used (whiten falls back to svd for a layer calibration never reached)
    init: str | None = None
    # one product's milliseconds at serve_rows rows on this device, dense and as two factors
    # (`pela.compression.speed`); None where not timed
    ms_dense: float | None = None
    ms_factored: float | None = None
    serve_rows: int | None = None


@dataclass
class CompressionReport:
    layers: list[LayerReport]
    params_before: int  # whole model
    params_after: int
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    # σ per factorized layer, for plots; not in to_dict
    spectra: dict[str, list[float]] = field(default_factory=dict, repr=False)
    # with ``speedup``: the target, and the speed-up predicted and measured where the model is
    # served, of the student kept and of each one tried (the fraction of the factorizable
    # weights it kept) (`pela.compression.speed_target.SpeedTarget.confirm`)
    speed: dict[str, Any] | None = None

    @property
    def factorized(self) -> list[LayerReport]:
        return [r for r in self.layers if r.status == "factorized"]

    @property
    def linear_params_before(self) -> int:
        return sum(r.params_before for r in self.layers)

    @property
    def linear_params_after(self) -> int:
        return sum(r.params_after for r in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "linear_params_before": self.linear_params_before,
            "linear_params_after": self.linear_params_after,
            "seconds": self.seconds,
            "config": self.config,
            "layers": [dataclasses.asdict(r) for r in self.layers],
            **({"speed": self.speed} if self.speed is not None else {}),
        }

    def summary(self) -> str:
        n = len(self.factorized)
        line = (
            f"factorized {n} of {len(self.layers)} linear layers: parameters "
            f"{self.params_before:,} -> {self.params_after:,} "
            f"({self.params_after / max(self.params_before, 1):.1%}) in {self.seconds:.2f}s"
        )
        if self.speed is None:
            return line
        s = self.speed
        line += f"\nspeed-up where it is served ({s['serve_rows']} rows a product): "
        if s["measured"] is None:
            return line + f"predicted {s['predicted']:.2f}× (target {s['target']:g}×)"
        student, original = s["measured_ms"]
        return line + (f"measured {s['measured']:.2f}× ({student:.3g} vs {original:.3g} ms, both "
                       f"laid out; target {s['target']:g}×, predicted {s['predicted']:.2f}×)")

    def __str__(self) -> str:
        lines = [
            "| layer | in | out | rank | params before | params after | rel. error | note |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in self.layers:
            err = "" if r.rel_error is None else f"{r.rel_error:.4f}"
            rank = "dense" if r.rank is None else str(r.rank)
            lines.append(
                f"| {r.name} | {r.in_features} | {r.out_features} | {rank} | {r.params_before:,} | "
                f"{r.params_after:,} | {err} | {r.reason or ''} |"
            )
        return "\n".join(lines + ["", self.summary()])
