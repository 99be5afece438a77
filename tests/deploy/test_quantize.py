"""int8 on top of a student: ONNX Runtime's dynamic quantization, through export_onnx and the CLI."""

import json

import onnx
import pytest
import torch
from conftest import hf_bert

import pela
from pela.cli.app import main
from pela.deploy.onnx import ONNX_NAME, RECORD_NAME, export_onnx
from pela.deploy.quantize import quantize_onnx

pytestmark = pytest.mark.slow  # torch.export and ONNX Runtime sessions: seconds each


def test_an_int8_student_is_smaller_and_stays_close_to_the_float32_model(tmp_path):
    torch.manual_seed(0)
    student = hf_bert()
    pela.compress(student, pela.LowRankConfig(ratio=2, align=1))
    fp32 = export_onnx(student, tmp_path / "fp32")
    quantize_onnx(fp32.path, tmp_path / "direct.onnx")
    record = export_onnx(student, tmp_path / "int8", int8=True)
    ops = {n.op_type for n in onnx.load(str(record.path)).graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
    assert record.path.stat().st_size < fp32.path.stat().st_size
    assert record.path.stat().st_size == (tmp_path / "direct.onnx").stat().st_size
    assert record.int8 and record.max_abs_difference <= 1e-4  # the float32 graph was checked first
    assert 0 < record.int8_relative_error < 0.1 and record.int8_max_abs_difference > 1e-4
    assert json.loads((tmp_path / "int8" / RECORD_NAME).read_text())["int8"] is True
    assert not fp32.int8 and fp32.int8_relative_error is None
    assert sorted(p.name for p in (tmp_path / "int8").iterdir()) == [ONNX_NAME, RECORD_NAME]


def test_the_cli_quantizes_an_onnx_export_not_a_hugging_face_one(tmp_path, hf_bert_dir, capsys):
    assert main(["export", str(hf_bert_dir), "--out", str(tmp_path / "q"), "--format", "onnx",
                 "--int8"]) == 0
    assert "int8: outputs within" in capsys.readouterr().out
    assert main(["export", str(hf_bert_dir), "--out", str(tmp_path / "x"), "--int8"]) == 2
    assert "add --format onnx or --format pela" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_every_operator_the_quantizer_knows_but_its_own_attention():
    """ONNX's Attention (opset 23) would be taken for ONNX Runtime's com.microsoft one and written as
    a QAttention that does not load; every other operator the quantizer handles is still quantized."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    from pela.deploy.quantize import _OP_TYPES

    assert set(_OP_TYPES) == set(IntegerOpsRegistry) - {"Attention"}
