"""ONNX Runtime sessions to time beside PyTorch: float32 and int8, fed the batch PyTorch gets."""

import pytest
import torch
from conftest import hf_bert

from pela.deploy.onnx import named_inputs
from pela.deploy.onnx_runs import RUNTIMES, onnx_runs

pytestmark = pytest.mark.slow  # an export, its int8 form and their sessions


def test_both_runtimes_run_the_batch_pytorch_runs(tmp_path):
    model = hf_bert().eval()
    runs = onnx_runs(model, 2, 8, tmp_path)
    assert [r.runtime for r in runs] == list(RUNTIMES)
    inputs, _ = named_inputs(model, 2, 8)
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
    fp32, int8 = (torch.from_numpy(r.run()[0]) for r in runs)
    torch.testing.assert_close(fp32, expected, rtol=1e-4, atol=1e-4)  # the same batch, not another
    assert 0 < (int8 - expected).abs().max() < 1  # quantized: close, not equal
    assert runs[1].file_bytes < runs[0].file_bytes


def test_a_fresh_process_says_what_memory_a_batch_needs(tmp_path):
    from pela.deploy.onnx_runs import process_peak_bytes

    small, large = (torch.nn.Sequential(torch.nn.Linear(n, n)) for n in (64, 1024))
    peaks = []
    for name, model in (("small", small), ("large", large)):
        path = tmp_path / name / "model.onnx"
        path.parent.mkdir()
        torch.onnx.export(model, (torch.randn(2, model[0].in_features),), str(path),
                          input_names=["x"], dynamo=False)
        feed = {"x": torch.randn(2, model[0].in_features).numpy()}
        peaks.append(process_peak_bytes(path, feed))
        assert not (path.parent / "peak_inputs.npz").exists()  # its inputs file is gone
    assert peaks[1] - peaks[0] >= 1024 * 1024 * 4 * 0.9  # 4 MiB more weights, resident
