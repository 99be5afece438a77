"""pela.arch.registry: which modules are linear layers, and which stay dense by default."""

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

import pela
from pela import LowRankConfig
from pela.arch import registry


def test_linear_weight_reads_linear_and_transposed_conv1d():
    linear = nn.Linear(6, 4)
    w, b = registry.linear_weight(linear)
    assert w is linear.weight and b is linear.bias
    conv = Conv1D(4, 6)  # GPT-2 stores W as in x out
    w, b = registry.linear_weight(conv)
    assert w.shape == (4, 6) and torch.equal(w, conv.weight.t())
    assert registry.linear_weight(nn.LayerNorm(4)) is None


def test_a_registered_linear_like_type_is_factorized(monkeypatch):
    class Scaled(nn.Module):  # x @ Wᵀ, with the weight under another name
        def __init__(self):
            super().__init__()
            self.kernel = nn.Parameter(torch.randn(64, 64))

        def forward(self, x):
            return x @ self.kernel.t()

    monkeypatch.setattr(registry, "LINEAR_LIKE", dict(registry.LINEAR_LIKE))
    model = nn.Sequential(Scaled())
    with pytest.raises(pela.PelaError, match="has no nn.Linear layers to factorize"):
        pela.compress(model, LowRankConfig(align=1))
    registry.register_linear_like(Scaled, lambda m: (m.kernel, None))
    report = pela.compress(model, LowRankConfig(align=1))
    assert [r.status for r in report.layers] == ["factorized"]


def test_a_default_exclusion_keeps_layers_dense_with_its_reason(monkeypatch):
    monkeypatch.setattr(registry, "DEFAULT_EXCLUDE", dict(registry.DEFAULT_EXCLUDE))
    registry.add_default_exclusion(r"^1$", "the user's own reason")
    report = pela.compress(nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64)), LowRankConfig(align=1))
    assert [(r.status, r.reason) for r in report.layers] == [("factorized", None), ("dense", "default exclusion: the user's own reason")]
    with pytest.raises(Exception):
        registry.add_default_exclusion("(", "not a regular expression")
