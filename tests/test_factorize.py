import math

import pytest
import torch
from conftest import ARCHITECTURES
from torch import nn

import pela
from pela import LowRankConfig, LowRankLinear, PelaError
from pela.arch.inputs import example_inputs
from pela.compression.ranks import choose_rank
from pela.linalg import svd_spectrum

NO_SIGMA = torch.ones(1)


@pytest.mark.parametrize("m, n, k", [(768, 3072, 2), (768, 2304, 2), (768, 768, 1.5), (384, 1536, 3), (100, 37, 2)])
def test_rank_formula_is_the_papers(m, n, k):
    r, reason = choose_rank(n, m, NO_SIGMA, LowRankConfig(ratio=k, align=1))
    assert r == math.floor(m * n / (k * (m + n)))
    assert reason is None


def test_alignment_rounds_down_for_ratio_and_up_for_energy():
    r, _ = choose_rank(3072, 768, NO_SIGMA, LowRankConfig(ratio=2, align=8))  # exact 307
    assert r == 304
    sigma = torch.linspace(10, 1, 64)
    exact, _ = choose_rank(64, 64, sigma, LowRankConfig(energy=0.5, align=1))
    aligned, _ = choose_rank(64, 64, sigma, LowRankConfig(energy=0.5, align=8))
    assert aligned % 8 == 0 and exact <= aligned < exact + 8
    energy = sigma**2
    assert energy[:exact].sum() / energy.sum() >= 0.5 > energy[: exact - 1].sum() / energy.sum()


@pytest.mark.parametrize("k", [1.01, 1.2, 1.5, 2, 3, 8])
@pytest.mark.parametrize("align", [1, 8, 64])
def test_never_larger(k, align):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(40, 40), nn.Linear(40, 200), nn.Linear(200, 12), nn.Linear(12, 300))
    before = {n: m.weight.numel() + m.bias.numel() for n, m in net.named_children()}
    try:
        report = pela.compress(net, LowRankConfig(ratio=k, align=align, min_features=1))
    except PelaError as e:  # every layer may legitimately stay dense at small k or big align
        assert "no layer was factorized" in str(e)
        return
    for row in report.layers:
        assert row.params_after <= row.params_before == before[row.name]
        if row.status == "factorized":
            assert row.params_after - row.out_features <= (row.params_before - row.out_features) / k + 1e-9
    assert report.params_after < report.params_before


@pytest.mark.parametrize("shape", [(96, 64), (64, 96), (50, 50)])
def test_eckart_young_optimal(shape):
    torch.manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], dtype=torch.float64))
    s = torch.logspace(0, -3, min(shape), dtype=torch.float64)
    w = (u[:, : len(s)] * s) @ v[:, : len(s)].T
    lin = nn.Linear(shape[1], shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
    net = nn.Sequential(lin)
    report = pela.compress(net, LowRankConfig(rank=16, align=1))
    row = report.layers[0]
    optimum = float(torch.sqrt((s[16:] ** 2).sum() / (s**2).sum()))
    assert row.rank == 16 and row.rel_error == pytest.approx(optimum, abs=1e-5)
    achieved = torch.linalg.matrix_norm(w.float() - net[0].weight) / torch.linalg.matrix_norm(w.float())
    assert float(achieved.detach()) <= optimum + 1e-4


def test_rank_deficient_weight_gives_finite_factors():
    lin = nn.Linear(32, 32)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[:4] = torch.randn(4, 32)
    net = nn.Sequential(lin)
    pela.compress(net, LowRankConfig(rank=8, align=1))
    assert torch.isfinite(net[0].a.weight).all() and torch.isfinite(net[0].b.weight).all()
    assert torch.allclose(net[0].weight, lin.weight, atol=1e-5)


def test_svd_split_is_balanced():
    torch.manual_seed(0)
    w = torch.randn(40, 30)
    sp = svd_spectrum(w)
    a, b = sp.factors(10)
    # B = U√Σ and A = √Σ Vᵀ: both factors carry the same singular values
    assert torch.allclose(torch.linalg.svdvals(a), torch.linalg.svdvals(b), rtol=1e-4)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architectures_compress_and_run(name):
    torch.manual_seed(0)
    model = ARCHITECTURES[name]()
    inputs = example_inputs(model, batch_size=2, seq_len=8)
    call = (lambda m: m(*inputs)) if isinstance(inputs, tuple) else (lambda m: m(**inputs))
    with torch.no_grad():
        ref = call(model)
    report = pela.compress(model, LowRankConfig(ratio=2, align=1))
    assert report.factorized and report.params_after < report.params_before
    with torch.no_grad():
        out = call(model)
    first = lambda o: o if torch.is_tensor(o) else (o.logits_per_image if hasattr(o, "logits_per_image") else o[0])  # noqa: E731
    assert first(out).shape == first(ref).shape and torch.isfinite(first(out)).all()
    dense = {r.name: r.reason for r in report.layers if r.status == "dense"}
    for layer_name, reason in dense.items():  # heads, projections and patch merging are left alone
        assert reason
    assert not any(isinstance(m, LowRankLinear) for n, m in model.named_modules() if "head" in n or "classifier" in n)
    if name == "timm_swin":
        assert "default exclusion" in dense["layers.1.downsample.reduction"]
    if name == "hf_clip":
        assert {"visual_projection", "text_projection"} <= set(dense)
        assert any(r.name.startswith("text_model") for r in report.factorized)
        assert any(r.name.startswith("vision_model") for r in report.factorized)


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


def test_errors(mlp):
    with pytest.raises(PelaError, match="matches no linear layer.*available: 0, 2, 4"):
        pela.compress(mlp, LowRankConfig(exclude=["nothing_like_this"]))
    with pytest.raises(PelaError, match="no nn.Linear"):
        pela.compress(nn.Sequential(nn.ReLU()))
    with pytest.raises(PelaError, match="nn.Module"):
        pela.compress("model")
    weights = [p.clone() for p in mlp.parameters()]
    with pytest.raises(PelaError, match="no layer was factorized"):
        pela.compress(mlp, LowRankConfig(rank=1000))  # above every layer's full rank
    assert all(torch.equal(a, b) for a, b in zip(weights, mlp.parameters()))  # untouched
    pela.compress(mlp, LowRankConfig(align=1))
    with pytest.raises(PelaError, match="already compressed"):
        pela.compress(mlp)


def test_report_contents(mlp):
    report = pela.compress(mlp, LowRankConfig(ratio=2, align=1))
    d = report.to_dict()
    assert {"params_before", "params_after", "seconds", "layers"} <= set(d)
    assert {"name", "in_features", "out_features", "rank", "rel_error"} <= set(d["layers"][0])
    assert d["params_after"] == sum(p.numel() for p in mlp.parameters())
    assert "| 0 | 64 | 96 |" in str(report)
    assert [r.reason for r in report.layers if r.status == "dense"] == ["fewer than 10 features"]
