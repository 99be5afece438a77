"""``pela bench``: one table of speed, memory and size; ONNX Runtime beside PyTorch with --onnx."""

import re

import pytest
from conftest import run_cli


def test_generation_needs_a_language_model_and_times_int8_in_its_own_export(capsys, hf_bert_dir):
    capsys.readouterr()  # what making the fixture printed
    code, _, err = run_cli(capsys, "bench", hf_bert_dir, "--generate", "--onnx")
    assert code == 2 and "needs a causal language model" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "bench", hf_bert_dir, "--generate", "--config", "int8=true")
    assert code == 2 and "bench the int8 model itself" in err and err.count("\n") == 1


@pytest.mark.slow  # two ONNX exports of each model and their sessions
def test_onnx_adds_runtimes_sizes_and_the_students_best_against_the_original(tmp_path, capsys,
                                                                               hf_bert_dir):
    code, _, err = run_cli(capsys, "compress", hf_bert_dir, "--out", tmp_path / "k2", "--ratio", 2,
                           "--config", "align=1")
    assert code == 0, err
    # (the results themselves: tests/bench/test_throughput.py; here, what the table says)
    code, out, err = run_cli(capsys, "bench", tmp_path / "k2", "--vs", hf_bert_dir, "--batch-size", 2,
                             "--seq-len", 8, "--config", "iters=1", "--config", "rounds=1", "--onnx")
    assert code == 0, err
    assert out.count(" MB") == 8  # each model's weights in each runtime
    flat = " ".join(out.split())  # the console wraps long lines
    for runtime in ("pytorch", "pytorch int8", "onnxruntime", "onnxruntime int8"):
        assert f"{runtime}: throughput ratio" in flat
    assert re.search(r"k2 in (pytorch int8|onnxruntime( int8)?) against .*bert in pytorch: "
                     r"\d+\.\d\d×", flat)
    weights = re.search(r"onnxruntime: throughput ratio .*?weights (\d+\.\d+)×", flat)
    assert weights and float(weights.group(1)) <= 1  # the student's graph is no larger (tiny: rounds to 1)
