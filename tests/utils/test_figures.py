"""Figures: a path matplotlib cannot write is refused first; a figure is written whole."""

import pytest

from pela.errors import PelaError
from pela.utils.figures import check_figure_path, pyplot, save_figure


def test_a_plot_path_must_name_a_format_matplotlib_writes(tmp_path):
    assert check_figure_path(tmp_path / "a.PNG").name == "a.PNG"
    with pytest.raises(PelaError, match="must end in .png, .pdf, .svg"):
        check_figure_path(tmp_path / "a.jpg")


def test_a_figure_is_written_by_rename_and_closed(tmp_path):
    plt = pyplot()
    fig = plt.figure()
    fig.gca().plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "sub" / "f.png")
    assert (tmp_path / "sub" / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["f.png"]  # no temporary left
    assert not plt.fignum_exists(fig.number)
