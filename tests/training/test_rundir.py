"""pela.training.rundir: a run never destroys what was there before it succeeds."""

import pytest
import torch

import pela
from pela.training.rundir import run_dir, staging_dir


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 4))


def test_overwrite_runs_beside_the_old_output_and_replaces_it_at_the_end(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the good model")
    with run_dir(out, resume=False, overwrite=True) as run:
        assert run.path == staging_dir(out) and (out / "old.txt").exists()  # the old output stays while the run runs
        (run.path / "metrics.jsonl").write_text("{}\n")
        assert run.publish(_model(), {"note": 1})
        assert run.path == out  # extras after the model go beside it
    assert not (out / "old.txt").exists() and (out / "metrics.jsonl").exists() and pela.load(out, model=_model())
    assert not staging_dir(out).exists()


def test_a_failed_overwrite_keeps_the_old_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the good model")
    with pytest.raises(RuntimeError):
        with run_dir(out, resume=False, overwrite=True):
            raise RuntimeError("a crash before the first checkpoint")
    assert (out / "old.txt").read_text() == "the good model" and not staging_dir(out).exists()


def test_resume_finds_an_unfinished_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the good model")
    (staging_dir(out) / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (staging_dir(out) / "checkpoints" / "checkpoint-2" / "state.json").write_text('{"step": 2}')
    (staging_dir(out) / "checkpoints" / "latest.json").write_text('{"step": 2, "path": "checkpoint-2"}')
    with run_dir(out, resume=True, overwrite=False) as run:
        assert run.path == staging_dir(out)


def test_ctrl_c_says_whether_there_is_a_checkpoint(tmp_path):
    from pela.errors import Interrupted

    with pytest.raises(Interrupted) as stopped:
        with run_dir(tmp_path / "out", resume=False, overwrite=False):
            raise KeyboardInterrupt
    assert not stopped.value.resumable and not (tmp_path / "out").exists()
