import torch
from torch import nn

from pela import LowRankLinear


def test_from_linear_matches_full_rank():
    torch.manual_seed(0)
    dense = nn.Linear(24, 16)
    low = LowRankLinear.from_linear(dense, rank=16)  # full rank: exact up to float error
    x = torch.randn(5, 24)
    assert torch.allclose(low(x), dense(x), atol=1e-5)
    assert low.bias is low.b.bias and low.weight.shape == dense.weight.shape


def test_drop_in_shapes_dtype_and_autocast():
    layer = LowRankLinear(32, 48, 8).to(torch.bfloat16)
    y = layer(torch.randn(2, 7, 32, dtype=torch.bfloat16))
    assert y.shape == (2, 7, 48) and y.dtype == torch.bfloat16
    layer32 = LowRankLinear(32, 48, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer32(torch.randn(3, 32)).dtype == torch.bfloat16
    assert "rank=8" in repr(layer32)


def test_torch_compile():
    torch.manual_seed(0)
    layer = LowRankLinear(16, 16, 4)
    x = torch.randn(4, 16)
    compiled = torch.compile(layer, backend="aot_eager")  # exercises tracing without a C++ toolchain
    assert torch.allclose(compiled(x), layer(x), atol=1e-6)


def test_gradients_reach_both_factors():
    layer = LowRankLinear(8, 8, 2)
    layer(torch.randn(3, 8)).sum().backward()
    assert layer.a.weight.grad is not None and layer.b.weight.grad is not None
