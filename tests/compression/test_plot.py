"""The figure of a compression's ranks and spectra."""

import pytest

import pela
from pela.compression.plot import plot_compression
from pela.compression.report import CompressionReport
from pela.errors import PelaError


def test_the_figure_is_written_and_an_empty_compression_refused(tmp_path, mlp):
    report = pela.compress(mlp, pela.LowRankConfig(ratio=2, align=1))
    plot_compression(report, tmp_path / "ranks.png")
    assert (tmp_path / "ranks.png").stat().st_size > 1000
    nothing = CompressionReport(layers=[], params_before=10, params_after=10, seconds=0.0)
    with pytest.raises(PelaError, match="nothing was factorized"):
        plot_compression(nothing, tmp_path / "none.png")
