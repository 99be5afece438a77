"""``pela bench``: one table of speed, memory and size; ONNX Runtime beside PyTorch with --onnx."""

import json

import pytest
from conftest import run_cli


def test_onnx_is_for_encoders_and_vision_models_not_generation(capsys, hf_bert_dir):
    capsys.readouterr()  # what making the fixture printed
    code, _, err = run_cli(capsys, "bench", hf_bert_dir, "--generate", "--onnx")
    assert code == 2 and err.startswith("error: --onnx times encoders") and err.count("\n") == 1


@pytest.mark.slow  # two ONNX exports of each model and their sessions
def test_onnx_adds_runtimes_sizes_and_the_students_best_against_the_original(tmp_path, capsys,
                                                                               hf_bert_dir):
    code, _, err = run_cli(capsys, "compress", hf_bert_dir, "--out", tmp_path / "k2", "--ratio", 2,
                           "--align", 1)
    assert code == 0, err
    args = ["bench", tmp_path / "k2", "--vs", hf_bert_dir, "--batch-size", 2, "--seq-len", 8,
            "--iters", 1, "--rounds", 1, "--onnx"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    for runtime in ("pytorch", "onnxruntime", "onnxruntime int8"):
        assert f"{runtime}: throughput ratio" in out
    assert "against" in out and "in pytorch:" in out and out.count(" MB") == 6
    code, out, err = run_cli(capsys, *args, "--json")
    report = json.loads(out)
    assert set(report["ratios"]) == {"pytorch", "onnxruntime", "onnxruntime int8"}
    assert report["ratio"] == report["ratios"]["pytorch"]["throughput"]
    assert report["ratios"]["onnxruntime"]["weights"] < 1  # the student's graph is smaller
