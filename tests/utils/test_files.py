"""pela.utils.files: atomic output."""

import pytest

from pela.utils.files import atomic_dir


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_is_an_input_is_refused(tmp_path):
    from pela.errors import PelaError
    from pela.utils.files import check_not_input

    (tmp_path / "model").mkdir()
    (tmp_path / "data.txt").write_text("x\n")
    check_not_input(tmp_path / "other", {"--student": tmp_path / "model", "--teacher": "hf:org/name", "--data": None})
    with pytest.raises(PelaError, match="is the input --student"):
        check_not_input(tmp_path / "model", {"--student": tmp_path / "model"})
    with pytest.raises(PelaError, match="holds the input --data"):  # replacing the folder would delete the data in it
        check_not_input(tmp_path, {"--data": tmp_path / "data.txt"})


def test_an_output_with_checkpoints_suggests_resume(tmp_path):
    from pela.errors import PelaError
    from pela.utils.files import check_output_dir

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "latest.json").write_text("{}")
    with pytest.raises(PelaError, match="--resume continues it, --overwrite starts over"):
        check_output_dir(tmp_path / "run")


def test_what_a_killed_writer_left_is_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    from pela.utils.files import atomic_write_text, temporary_prefix

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".report.md.tmp-{dead.stdout.strip()}-abc"  # a process that no longer runs
    stale.write_text("half")
    mine = tmp_path / f"{temporary_prefix('report.md')}xyz"  # one this process is writing: kept
    mine.write_text("in progress")
    other = tmp_path / ".notes.md.tmp-1-abc"  # another file's: not this write's business
    other.write_text("x")
    from pela.utils.files import remove_stale_temporaries

    atomic_write_text(tmp_path / "report.md", "done")
    remove_stale_temporaries(tmp_path, "report.md")
    assert not stale.exists() and mine.exists() and other.exists() and (tmp_path / "report.md").read_text() == "done"
