"""pela export: each format from one command; int8 of a pela directory that pela eval runs."""

import pytest
from conftest import run_cli

import pela
from pela.layers.int8 import int8_mode

pytestmark = pytest.mark.slow  # whole commands


def test_int8_pela_directory_that_eval_and_load_take(tmp_path, hf_bert_dir, capsys):
    code, out, err = run_cli(capsys, "export", hf_bert_dir, "--out", tmp_path / "q", "--format",
                             "pela", "--int8")
    assert code == 0, err
    out = " ".join(out.split())  # as rich wrapped it
    assert "with int8 weights (dynamic;" in out and "of the float model's" in out
    assert int8_mode(pela.load(tmp_path / "q")) == "dynamic"
    assert (tmp_path / "q" / "vocab.txt").is_file()  # its tokenizer travels with it
    code, out, err = run_cli(capsys, "export", hf_bert_dir, "--out", tmp_path / "plain",
                             "--format", "pela")
    assert code == 0 and int8_mode(pela.load(tmp_path / "plain")) is None


def test_bad_int8_requests_are_one_line_errors(tmp_path, hf_bert_dir, capsys):
    code, _, err = run_cli(capsys, "export", hf_bert_dir, "--out", tmp_path / "x", "--int8")
    assert code == 2 and "add --format onnx or --format pela" in err
    code, _, err = run_cli(capsys, "export", hf_bert_dir, "--out", tmp_path / "x", "--format",
                           "pela", "--int8", "--config", "int8_mode=int4")
    assert code == 2 and "int8_mode must be one of dynamic, weight" in err
    assert not (tmp_path / "x").exists()
