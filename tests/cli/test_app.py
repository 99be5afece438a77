"""The `pela` entry point: exit codes, one-line errors and warnings, tracebacks kept for bugs, help."""

import os
import re
import subprocess
import sys

import pytest
from conftest import run_cli

import pela
from pela.cli.app import main


@pytest.mark.slow
def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pela", "compress", "timm:vit_tiny_patch16_224", "--config", "random_init=true",
                           "--ratio", "0.5", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ratio must be") and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_pelas_own_warnings_print_as_one_line():
    import importlib

    from pela.cli.app import _format_warning

    ours = importlib.import_module("pela.training.distill").__file__
    assert _format_warning(UserWarning("no task loss"), UserWarning, ours, 7) == "warning: no task loss\n"
    theirs = _format_warning(UserWarning("deprecated"), UserWarning, os.path.join("home", "pela", "torch", "nn.py"), 7)
    assert "UserWarning: deprecated" in theirs  # another library's warning keeps Python's form, with its origin


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith(f"pela {pela.__version__} (torch ") and "transformers" in out and out.count("\n") == 1


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """Only user mistakes (PelaError, usage) become one line and exit 2: any other error is a bug, raised as it is."""
    import pela.cli.inspect_cmd

    (tmp_path / "t.txt").write_text("one\ntwo\n")

    def broken(ds):
        raise ValueError("a bug in pela")

    monkeypatch.setattr(pela.cli.inspect_cmd, "describe", broken)
    with pytest.raises(ValueError, match="a bug in pela"):
        main(["data", str(tmp_path / "t.txt")])
    monkeypatch.setattr(pela.cli.inspect_cmd, "describe", lambda ds: (_ for _ in ()).throw(pela.PelaError("your mistake")))
    assert main(["data", str(tmp_path / "t.txt")]) == 2


def test_no_help_text_is_swallowed_as_rich_markup():
    """Rich reads ``[default: …]`` in a help string as a markup tag and prints nothing of it."""

    import typer

    from pela.cli.app import app

    group = typer.main.get_command(app)
    helps = [(name, p.name, p.help or "") for name, cmd in group.commands.items() for p in cmd.params]
    assert len(helps) > 50
    eaten = [(c, p, h) for c, p, h in helps if re.search(r"\[[a-z/ ]+[:=]", h)]
    assert not eaten, eaten
