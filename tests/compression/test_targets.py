"""pela.compression.targets: which layers are factorized, and why the others stay dense."""

import pytest
import torch
from conftest import ARCHITECTURES
from torch import nn

import pela
from pela import LowRankConfig, PelaError


def test_gpt2_conv1d_is_handled_exactly():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    model = ARCHITECTURES["hf_gpt2"]()
    with torch.no_grad():  # make every Conv1D weight exactly rank 4, so a rank-4 factorization is lossless
        for m in model.modules():
            if isinstance(m, Conv1D):
                m.weight.copy_(torch.randn(m.weight.shape[0], 4) @ torch.randn(4, m.weight.shape[1]) / 4)
    ids = torch.randint(0, 100, (2, 8))
    with torch.no_grad():
        ref = model(ids).last_hidden_state
    report = pela.compress(model, LowRankConfig(rank=4, align=1))
    assert len(report.factorized) == 8
    with torch.no_grad():
        assert torch.allclose(model(ids).last_hidden_state, ref, atol=1e-4)


def test_multihead_attention_out_proj_stays_dense():
    net = nn.Sequential(nn.MultiheadAttention(32, 2, batch_first=True))
    net.append(nn.Linear(32, 32))
    with pytest.raises(PelaError, match="no layer was factorized"):
        pela.compress(nn.ModuleDict({"attn": nn.MultiheadAttention(32, 2)}))
    report = pela.compress(net, LowRankConfig(ratio=2, align=1))
    reasons = {r.name: r.reason for r in report.layers}
    assert reasons["0.out_proj"] == "read directly by nn.MultiheadAttention"


def test_include_exclude_semantics(mlp):
    report = pela.compress(mlp, LowRankConfig(include=["^0$"], align=1))
    assert [r.name for r in report.factorized] == ["0"]
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("head", nn.Linear(64, 64))
    net.add_module("body", nn.Linear(64, 64))
    assert [r.name for r in pela.compress(net, LowRankConfig(align=1)).factorized] == ["body"]
    net2 = nn.Sequential()
    net2.add_module("head", nn.Linear(64, 64))
    net2.add_module("body", nn.Linear(64, 64))
    # an explicit include overrides the default exclusions; an explicit exclude replaces them
    assert [r.name for r in pela.compress(net2, LowRankConfig(include=["head"], align=1)).factorized] == ["head"]


def test_exclude_list_replaces_defaults():
    net = nn.Sequential()
    net.add_module("head", nn.Linear(64, 64))
    net.add_module("body", nn.Linear(64, 64))
    report = pela.compress(net, LowRankConfig(exclude=["body"], align=1))
    assert [r.name for r in report.factorized] == ["head"]
