"""Factored layers' learning rates: a step on the factors moves ``B·A`` as far as Adam moves a dense weight."""

import copy

import pytest
import torch
from conftest import Labelled, crashing_stack, hf_bert, stack

import pela
from pela import FinetuneConfig, LowRankConfig, PelaError
from pela.layers.lowrank import LowRankLinear
from pela.training.rates import factor_rates, param_groups, step_matched


@pytest.mark.parametrize("scale_a,scale_b", [(1.0, 1.0), (0.05, 3.0), (4.0, 0.2)])
def test_matched_steps_move_the_product_as_far_as_a_dense_step(scale_a, scale_b):
    """Random-sign steps of lr × step_matched on both factors change B·A by about lr per element, whatever the factors' size."""
    g = torch.Generator().manual_seed(0)
    out, inp, rank, lr = 96, 64, 16, 1e-3
    layer = LowRankLinear.from_factors(torch.randn(rank, inp, generator=g) * scale_a, torch.randn(out, rank, generator=g) * scale_b, None)
    a, b = layer.a.weight.detach(), layer.b.weight.detach()
    step = lr * step_matched(layer)
    moved = []
    for _ in range(20):
        da = step * torch.randint(0, 2, a.shape, generator=g).mul(2).sub(1)
        db = step * torch.randint(0, 2, b.shape, generator=g).mul(2).sub(1)
        moved.append(((b + db) @ (a + da) - b @ a).pow(2).mean().sqrt())
    assert float(torch.stack(moved).mean()) == pytest.approx(lr, rel=0.05)
    plain = ((b + db / step * lr) @ (a + da / step * lr) - b @ a).pow(2).mean().sqrt()  # the same steps at the dense rate
    assert abs(float(plain) / lr - 1) > 0.5  # the case it exists for: without it, the factors' size sets the step


def test_rates_cover_the_trained_factors_only():
    torch.manual_seed(0)
    model = hf_bert()
    pela.compress(model, LowRankConfig(align=1))
    layers = [m for m in model.modules() if isinstance(m, LowRankLinear)]
    layers[0].a.weight.requires_grad_(False)
    rates = factor_rates(model, "matched")
    assert [len(ps) for ps, _ in rates] == [1] + [2] * (len(layers) - 1) and rates[0][0] == [layers[0].b.weight]
    assert rates[1] == ([layers[1].a.weight, layers[1].b.weight], step_matched(layers[1]))
    assert {scale for _, scale in factor_rates(model, 0.5)} == {0.5}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = param_groups(params, 1e-3, rates)
    assert sorted(id(p) for grp in groups for p in grp["params"]) == sorted(map(id, params))  # each parameter once
    assert [grp["lr"] for grp in groups] == pytest.approx([1e-3] + [1e-3 * scale for _, scale in rates])
    assert len(param_groups(params, 1e-3, None)) == 1


@pytest.mark.parametrize("factor_lr", ["matched", 0.25])
def test_finetuning_steps_each_factored_layer_at_its_rate(factor_lr):
    """Adam's first step moves each weight by its group's rate: the head by lr, each factor by lr × its multiplier."""
    torch.manual_seed(0)
    model = hf_bert()
    pela.compress(model, LowRankConfig(align=1))
    before = copy.deepcopy(model)
    expected = {name: (step_matched(m) if factor_lr == "matched" else factor_lr)
                for name, m in before.named_modules() if isinstance(m, LowRankLinear)}
    lr = 1e-3
    config = FinetuneConfig(steps=1, batch_size=16, lr=lr, warmup=0.0, weight_decay=0.0, factor_lr=factor_lr)
    tuned, _ = pela.finetune(model, Labelled(), config, collate_fn=stack)
    moved = {}
    for name, m in tuned.named_modules():
        if isinstance(m, LowRankLinear):
            old = before.get_submodule(name.removeprefix("backbone."))
            moved[name.removeprefix("backbone.")] = float((m.b.weight - old.b.weight).detach().abs().max()) / lr
    assert moved.keys() == expected.keys() and [n for n, v in moved.items() if v == 0] == ["pooler.dense"]  # mean pooling skips it
    for name, ratio in moved.items():
        if name == "pooler.dense":
            continue
        assert ratio == pytest.approx(expected[name], rel=0.02), name
    assert len(set(round(v, 3) for v in expected.values())) > 1 or factor_lr != "matched"  # the layers do differ


def test_finetuning_at_matched_rates_resumes_bitwise(tmp_path):
    """Resumed, a run keeps the groups and rates it started with, though its factors' sizes have changed."""
    def run(out, collate, resume=False):
        torch.manual_seed(0)
        model = hf_bert()
        pela.compress(model, LowRankConfig(align=1))
        config = FinetuneConfig(steps=6, batch_size=8, lr=1e-3, save_every=2)
        return pela.finetune(model, Labelled(), config, collate_fn=collate, out=out, resume=resume, num_classes=3)[0]

    expected = run(tmp_path / "straight", stack).state_dict()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "crashed", crashing_stack())
    resumed = run(tmp_path / "crashed", stack, resume=True)  # a fresh process rebuilds the model from scratch
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in expected.items())


@pytest.mark.parametrize("bad", ["fast", 0, -1.0, float("nan"), True])
def test_a_bad_factor_rate_is_a_clear_error(bad):
    with pytest.raises(PelaError, match="factor_lr must be"):
        FinetuneConfig(factor_lr=bad)
