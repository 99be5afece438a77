"""The registry of initializations `LowRankConfig(init=...)` may name.

``svd`` (the weights' truncated SVD) and ``whiten`` (outputs on calibration inputs) are built in; a
new one is one function ``fn(weight, stats) -> Spectrum`` registered with `register_init`.
`LowRankConfig` checks names against this registry, which it imports, so what is valid never depends
on import order.
"""

from __future__ import annotations

from typing import Callable

from pela.linalg import Spectrum, svd_spectrum, whiten_spectrum

INITS: dict[str, Callable[..., Spectrum]] = {"svd": svd_spectrum, "whiten": whiten_spectrum}
NEEDS_CALIBRATION: set[str] = {"whiten"}


def register_init(name: str, needs_calibration: bool = False) -> Callable:
    """Register ``fn(weight, stats) -> Spectrum`` as ``LowRankConfig(init=name)``.

    ``stats`` is the layer's input second moment ``E[x xᵀ]`` from `pela.calibrate` (float64,
    in × in), or ``None`` for inits that do not need calibration.
    """

    def deco(fn: Callable[..., Spectrum]) -> Callable[..., Spectrum]:
        INITS[name] = fn
        if needs_calibration:
            NEEDS_CALIBRATION.add(name)
        return fn

    return deco
