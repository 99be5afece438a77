"""Per-layer rank rules (ratio, rank, energy) and the errors a rank leaves."""

from __future__ import annotations

import math

import torch

from pela.compression.config import LowRankConfig


def align_rank(r: int, align: int, up: bool) -> int:
    if align <= 1 or r < align:
        return align if up and r > 0 and align > 1 else r
    return -(-r // align) * align if up else r // align * align


def choose_rank(
    out_features: int, in_features: int, sigma: torch.Tensor, config: LowRankConfig
) -> tuple[int, str | None]:
    """The rank for one layer and, if it must stay dense, why.

    ratio k: ``floor(m·n / (k·(m+n)))`` rounded *down* to ``align``; rank: capped at full rank and
    rounded down; energy: the fewest singular values whose ``Σσ²`` reaches the fraction, rounded
    *up*. A rank that would not make the layer smaller (``r·(m+n) ≥ m·n``) leaves it dense.
    """
    m, n = in_features, out_features
    full = min(m, n)
    mode, value = config.resolved_mode()
    if mode == "ratio":
        r = align_rank(math.floor(m * n / (value * (m + n))), config.align, up=False)
    elif mode == "rank":
        r = align_rank(min(int(value), full), config.align, up=False)
    else:
        energy = sigma.double() ** 2
        total = float(energy.sum())
        if total == 0:
            r = 1
        else:
            cum = torch.cumsum(energy, 0) / total
            r = int(torch.searchsorted(cum, torch.tensor(value - 1e-12, dtype=cum.dtype))) + 1
        r = min(align_rank(min(r, full), config.align, up=True), full)
    if r < 1:
        return 0, f"{mode}={value} gives rank 0"
    if r * (m + n) >= m * n:
        return r, f"rank {r} would not make it smaller (break-even {m * n / (m + n):.0f})"
    return r, None


def relative_error(
    w: torch.Tensor, a: torch.Tensor, b: torch.Tensor, sigma: torch.Tensor, rank: int
) -> float:
    """``||W − BA||_F / ||W||_F``: from the discarded singular values when that is exact enough
    (working-precision factors, error above 1%), else by forming ``BA`` (one extra matmul)."""
    energy = sigma.double() ** 2
    total = float(energy.sum())
    if total == 0:
        return 0.0
    tail = float(energy[rank:].sum()) / total
    if a.dtype == w.dtype and tail > 1e-4:
        return tail**0.5
    return float(
        torch.linalg.matrix_norm(w - b.to(w.dtype) @ a.to(w.dtype)) / torch.linalg.matrix_norm(w)
    )


def tail_error(sigma: torch.Tensor, rank: int) -> float:
    """Relative error in the init's own metric (for whiten: outputs on calibration inputs), from the
    discarded σ."""
    energy = sigma.double() ** 2
    total = float(energy.sum())
    return (float(energy[rank:].sum()) / total) ** 0.5 if total > 0 else 0.0
