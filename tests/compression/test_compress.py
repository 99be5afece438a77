
import pytest
import torch
from conftest import ARCHITECTURES
from torch import nn

import pela
from pela import LowRankConfig, LowRankLinear, PelaError
from pela.arch.inputs import example_inputs


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
