"""Per-layer ranks and spectra of a compression, as a figure."""

from __future__ import annotations

import os

from pela.compression.report import CompressionReport
from pela.errors import PelaError
from pela.utils.figures import check_figure_path, pyplot, save_figure


def plot_compression(report: CompressionReport, path: str | os.PathLike) -> None:
    """Left: the rank of each factorized layer against its break-even rank. Right: every layer's
    normalized singular values ``σᵢ/σ₀`` (log scale), with a dot at the rank kept."""
    path = check_figure_path(path)
    rows = report.factorized
    if not rows:
        raise PelaError("nothing was factorized, so there is nothing to plot")
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = range(len(rows))
    left.bar(x, [r.rank for r in rows], color="tab:blue", label="rank kept")
    left.plot(
        x,
        [r.in_features * r.out_features / (r.in_features + r.out_features) for r in rows],
        "k_",
        ms=8,
        label="break-even rank",
    )
    left.set(
        xlabel="factorized layer (model order)",
        ylabel="rank",
        title=f"ranks ({report.config.get('init', 'svd')}; "
        f"{report.linear_params_after / max(report.linear_params_before, 1):.0%} of linear "
        "parameters)",
    )
    left.legend(fontsize=8)
    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(rows):
        sigma = report.spectra.get(r.name)
        if not sigma or sigma[0] <= 0:
            continue
        norm = [s / sigma[0] for s in sigma]
        color = cmap(i / max(len(rows) - 1, 1))
        right.semilogy(
            range(1, len(norm) + 1), [max(v, 1e-8) for v in norm], color=color, lw=0.8, alpha=0.8
        )
        if r.rank and r.rank <= len(norm):
            right.plot(r.rank, max(norm[r.rank - 1], 1e-8), "o", color=color, ms=3)
    right.set(
        xlabel="singular value index",
        ylabel="σᵢ / σ₀",
        title="spectra (color: layer order; dot: rank kept)",
    )
    fig.tight_layout()
    save_figure(fig, path)
