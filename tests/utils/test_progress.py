"""pela.utils.progress: a bar on a terminal; in a log (nohup, a scheduler, CI), plain progress lines."""

import os
import subprocess
import sys

import pytest

from pela.cli.app import main
from pela.utils import progress


def test_lines_say_where_a_job_stands(monkeypatch, capsys):
    clock = iter([0.0, 0.0, 10.0, 20.0, 31.0, 45.0, 70.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    lines = progress._Lines(total=100, description="distilling", every=30)
    lines.advance(0)  # t=0: where it starts
    lines.advance(10, info="loss 1.5")  # t=10: too soon for another line
    lines.advance(10)  # t=20: too soon
    lines.advance(10, info="loss 0.9")  # t=31: 30 steps in 31 s
    lines.advance(10)  # t=45: too soon
    lines.advance(60)  # t=70: the end, always said
    lines.close()
    assert capsys.readouterr().err.splitlines() == [
        "distilling: 0/100 (0%), 0m00s elapsed",
        "distilling: 30/100 (30%), 0.968/s, 0m31s elapsed, 1m12s left | loss 0.9",
        "distilling: 100/100 (100%), 1.79/s, 1m10s elapsed",
    ]


def test_a_long_step_still_gets_its_lines_on_time(capsys):
    """A step longer than the interval (a calibration batch of a large model): the log hears from the job on time,
    and the rate on the next line is still the true one."""
    import time

    lines = progress._Lines(total=2, description="calibrating", every=0.05)
    lines.advance(0)
    time.sleep(0.3)
    lines.advance(1)
    lines.close()
    said = capsys.readouterr().err.splitlines()
    beats = [line for line in said if "at work on the next for" in line]
    assert len(beats) >= 3 and all(line.startswith("calibrating: 0/2 (0%), ") for line in beats)
    rate = float(said[-1].split(", ")[1].removesuffix("/s"))
    assert said[-1].startswith("calibrating: 1/2 (50%)") and rate < 5  # one step in 0.3 s, not since the last heartbeat


def test_steps_that_advance_get_progress_lines_not_at_work_lines(capsys):
    """Fast steps between two lines: the line on time says how far the job is, never "at work on
    the next" (the heartbeat is for a step that outlasts the interval)."""
    import time

    lines = progress._Lines(total=1000, description="fine-tuning", every=0.05)
    lines.advance(0)
    for _ in range(200):
        time.sleep(0.001)
        lines.advance(1)
    lines.close()
    said = capsys.readouterr().err.splitlines()
    assert len(said) >= 3 and not [line for line in said if "at work" in line], said


def test_work_without_steps_says_it_is_at_work(capsys, monkeypatch):
    import time

    monkeypatch.setenv("PELA_PROGRESS_SECONDS", "0.05")
    with progress.activity("loading model"):
        time.sleep(0.2)
    said = capsys.readouterr().err.splitlines()
    assert said[0].startswith("loading model: 0m00s elapsed") and said[-1].startswith("loading model: done in ") and len(said) >= 3


@pytest.mark.slow
def test_a_command_writing_to_a_log_shows_progress_lines(tmp_path, hf_bert_dir):
    """stderr redirected to a file, as under nohup: the distillation reports its steps, rate and time left."""
    env = {**os.environ, "PELA_PROGRESS_SECONDS": "0"}
    (tmp_path / "t.txt").write_text("".join(f"w{i} w{i + 1} w{i + 2}\n" for i in range(32)))
    pela = [sys.executable, "-m", "pela"]
    assert main(["compress", str(hf_bert_dir), "--out", str(tmp_path / "s"), "--ratio", "4", "--config", "align=1"]) == 0
    with open(tmp_path / "log.txt", "w") as log:
        subprocess.run([*pela, "distill", "--student", str(tmp_path / "s"), "--teacher", str(hf_bert_dir), "--data",
                        str(tmp_path / "t.txt"), "--out", str(tmp_path / "run"), "--steps", "3", "--batch-size", "8"],
                       check=True, stdout=subprocess.DEVNULL, stderr=log, env=env)
    lines = [line for line in (tmp_path / "log.txt").read_text().splitlines() if line.startswith("distilling: ")]
    assert lines[0].startswith("distilling: 0/3 (0%)") and lines[-1].startswith("distilling: 3/3 (100%)")
    assert any(" left | feature " in line for line in lines[1:-1]) and all("/s, " in line for line in lines[1:])
