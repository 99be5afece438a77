"""ONNX export: the graph ONNX Runtime runs gives the model's outputs, factors stay two products,
and what cannot be exported is refused with nothing written."""

import json

import onnx
import pytest
import torch
from conftest import hf_bert

import pela
from pela.cli.app import main
from pela.deploy.onnx import ONNX_NAME, RECORD_NAME, export_onnx
from pela.errors import PelaError

pytestmark = pytest.mark.slow  # torch.export and ONNX Runtime sessions: seconds each


def _matmuls(path) -> int:
    return sum(n.op_type in ("MatMul", "Gemm") for n in onnx.load(str(path)).graph.node)


def test_an_encoder_student_runs_in_onnx_runtime_as_in_pytorch_with_its_factors_kept(tmp_path):
    torch.manual_seed(0)
    dense = export_onnx(hf_bert(), tmp_path / "dense")
    torch.manual_seed(0)
    student = hf_bert()
    report = pela.compress(student, pela.LowRankConfig(ratio=2, align=1))
    record = export_onnx(student, tmp_path / "student")
    assert record.inputs == ["input_ids", "attention_mask"]
    assert record.outputs[0] == "last_hidden_state"
    assert record.max_abs_difference <= 1e-4 and record.checked_shape == [3, 11]  # not the exported shape
    assert json.loads((tmp_path / "student" / RECORD_NAME).read_text())["outputs"] == record.outputs
    factorized = len(report.factorized)
    assert factorized > 0
    # each factorized layer is two products in the graph: B(A x), not a dense matrix rebuilt
    assert _matmuls(record.path) == _matmuls(dense.path) + factorized


def test_a_vision_student_exports_with_a_dynamic_batch(tmp_path):
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=5)
    pela.compress(vit, pela.LowRankConfig(ratio=2))
    record = export_onnx(vit, tmp_path / "vit")
    assert record.inputs == ["pixel_values"] and record.outputs == ["logits"]
    assert record.checked_shape == [3, 3, 32, 32]
    assert record.max_abs_difference <= 1e-4


def test_what_cannot_be_exported_or_does_not_match_leaves_nothing(tmp_path):
    with pytest.raises(PelaError, match="differ from the model's"):
        export_onnx(hf_bert(), tmp_path / "strict", atol=-1.0)  # no export can meet it
    assert not (tmp_path / "strict").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary left either


def test_the_cli_exports_a_pela_directory_with_its_tokenizer(tmp_path, hf_bert_dir, capsys):
    assert main(["compress", str(hf_bert_dir), "--out", str(tmp_path / "small"), "--ratio", "2"]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "small"), "--out", str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    assert "ONNX Runtime matches the model" in capsys.readouterr().out
    assert (tmp_path / "onnx" / ONNX_NAME).is_file() and (tmp_path / "onnx" / "vocab.txt").is_file()
    assert main(["export", str(tmp_path / "small"), "--out", str(tmp_path / "small"), "--format", "onnx",
                 "--overwrite"]) == 2
    assert main(["export", str(tmp_path / "small"), "--out", str(tmp_path / "x"), "--format", "tflite"]) == 2
    err = capsys.readouterr().err
    assert "--format must be one of hf, onnx, pela" in err and not (tmp_path / "x").exists()
    assert pela.load(tmp_path / "small") is not None  # the input is untouched


def test_a_packed_student_exports_its_shared_products_as_one(tmp_path):
    from pela.deploy.packed import pack

    student = hf_bert()
    pela.compress(student, pela.LowRankConfig(ratio=2, align=1))
    plain = export_onnx(student, tmp_path / "plain")
    groups = pack(student)
    packed = export_onnx(student, tmp_path / "packed")
    assert groups and packed.max_abs_difference <= 1e-4  # checked by ONNX Runtime, as any export
    # q, k and v: one product of their A factors instead of three
    assert _matmuls(packed.path) == _matmuls(plain.path) - sum(len(g) - 1 for g in groups)
