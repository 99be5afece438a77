import pytest
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


@pytest.mark.slow
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


def test_densify_merges_the_factors_back_into_dense_layers():
    from pela.layers.lowrank import densify

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 48), nn.GELU(), nn.Linear(48, 16, bias=False))
    x = torch.randn(5, 32)
    net[0] = LowRankLinear.from_linear(net[0], rank=8)
    net[2] = LowRankLinear.from_linear(net[2], rank=4)
    before = net(x)
    assert densify(net) == 2 and densify(net) == 0
    assert all(type(m) is nn.Linear for m in (net[0], net[2])) and net[2].bias is None
    torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-6)
    assert torch.linalg.matrix_rank(net[0].weight.detach()) == 8  # still the compressed layer, only no longer factored


def test_the_factors_run_as_plain_products_unless_something_watches_or_replaces_them():
    layer = LowRankLinear.from_linear(nn.Linear(16, 8), rank=4)
    x = torch.randn(3, 16)
    expected = layer.b.weight @ (layer.a.weight @ x.T) + layer.b.bias[:, None]
    torch.testing.assert_close(layer(x), expected.T)
    seen = []
    layer.b.register_forward_hook(lambda m, i, o: seen.append("hook"))
    layer(x)
    layer.a.forward = lambda t: seen.append("forward") or torch.zeros(t.shape[0], 4)  # as accelerate does
    assert torch.equal(layer(x), layer.b.bias.expand(3, 8))
    assert seen == ["hook", "forward", "hook"]
